// Parts of the protocol descriptor: the types one message needs (itself, its fields' types, their
// fields' types...), as a descriptor of their own. protobufjs builds a Root from the whole
// descriptor in ~10 ms on a fast host, ~0.4 s in a guest under emulation, and the first call a
// runtime makes (Health.Check) needs four small types of it; building only what a message needs
// keeps that cost off the first reply. Pure functions over the JSON descriptor
// (scripts/gen-descriptor.mjs output, protobufjs' INamespace shape).

export interface DescNode {
  nested?: Record<string, DescNode>;
  fields?: Record<string, { type: string; keyType?: string; rule?: string; id: number; options?: unknown }>;
  values?: Record<string, number>;
  methods?: Record<string, { requestType: string; responseType: string; requestStream?: boolean; responseStream?: boolean }>;
  oneofs?: unknown;
  options?: unknown;
  [k: string]: unknown;
}

const SCALARS = new Set(['double', 'float', 'int32', 'int64', 'uint32', 'uint64', 'sint32', 'sint64', 'fixed32', 'fixed64', 'sfixed32', 'sfixed64', 'bool', 'string', 'bytes']);

function nodeAt(root: DescNode, path: readonly string[]): DescNode | undefined {
  let n: DescNode | undefined = root;
  for (const p of path) n = n?.nested?.[p];
  return n;
}

/**
 * The full path of a type reference as protobuf resolves it: `.a.b.C` from the root; `b.C` or `C`
 * in the scope of the referring message's namespace, then each enclosing one up to the root.
 */
export function resolveRef(root: DescNode, scope: readonly string[], ref: string): string[] {
  const parts = ref.replace(/^\./, '').split('.');
  if (ref.startsWith('.')) {
    if (!nodeAt(root, parts)) throw new Error(`protocol descriptor: no type ${ref}`);
    return parts;
  }
  for (let i = scope.length; i >= 0; i--) {
    const candidate = [...scope.slice(0, i), ...parts];
    if (nodeAt(root, candidate)) return candidate;
  }
  throw new Error(`protocol descriptor: no type ${ref} (from ${scope.join('.') || 'the root'})`);
}

/** The full names (dotted) of a type and of every type it needs, its enclosing messages included. */
export function typeClosure(root: DescNode, name: string): Set<string> {
  const out = new Set<string>();
  const visit = (path: string[]): void => {
    const key = path.join('.');
    if (out.has(key)) return;
    const node = nodeAt(root, path);
    if (!node) throw new Error(`protocol descriptor: no type ${key}`);
    out.add(key);
    // An enclosing message (a nested type lives in it) comes along with its own needs.
    for (let i = path.length - 1; i > 0; i--) {
      const parent = nodeAt(root, path.slice(0, i));
      if (parent?.fields) visit(path.slice(0, i));
    }
    for (const f of Object.values(node.fields ?? {})) {
      if (SCALARS.has(f.type)) continue;
      visit(resolveRef(root, path, f.type)); // scope: the message itself, then outwards
    }
  };
  visit(name.replace(/^\./, '').split('.'));
  return out;
}

/**
 * A descriptor holding only the named types (full dotted names), with their namespaces. A kept
 * message keeps only the nested types that are also kept; services are left out.
 */
export function subsetDescriptor(root: DescNode, names: Iterable<string>): DescNode {
  const out: DescNode = {};
  for (const name of names) {
    const path = name.split('.');
    let src: DescNode = root;
    let dst: DescNode = out;
    path.forEach((part, i) => {
      src = src.nested![part]!;
      dst.nested ??= {};
      if (!dst.nested[part]) {
        const { nested: _nested, methods: _methods, ...own } = src;
        // Namespaces (no fields, no values) get nothing but their nesting.
        dst.nested[part] = i === path.length - 1 || src.fields || src.values ? { ...own } : {};
      }
      dst = dst.nested[part]!;
    });
  }
  return out;
}
