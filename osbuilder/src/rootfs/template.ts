// A small mustache subset for the distro templates (rootfs-templates/<distro>/files/):
//   {{name}} {{{name}}} {{&name}}   a value (never HTML-escaped: these are config files)
//   {{a.b}} {{.}}                   dotted names; the current item inside a section
//   {{#name}}...{{/name}}           a section: once if truthy, once per item of a non-empty list
//   {{^name}}...{{/name}}           an inverted section: once if falsy or an empty list
//   {{! comment }}                  nothing
// A section, inverted-section, closing or comment tag alone on its line takes the whole line
// with it (mustache's "standalone" rule), so templates can put them on lines of their own.
// Partials ({{>x}}) and delimiter changes ({{=<% %>=}}) are not supported (an error).
// In strict mode (the default) a name that no context defines is an error, so a misspelt
// variable in a distro's template fails the build instead of writing an empty value.

export class TemplateError extends Error {
  constructor(
    message: string,
    readonly line: number,
    readonly template?: string,
  ) {
    super(`${template ? `${template}:` : ''}${line}: ${message}`);
    this.name = 'TemplateError';
  }
}

export interface RenderOptions {
  /** Unknown names are errors (default true). */
  strict?: boolean;
  /** Template name for error messages. */
  name?: string;
}

type Node =
  | { kind: 'text'; text: string }
  | { kind: 'var'; name: string; line: number }
  | { kind: 'section'; name: string; inverted: boolean; line: number; children: Node[] };

interface TextTok {
  kind: 'text';
  text: string;
  /** Starts at the beginning of a line (start of the template, or after a removed standalone line). */
  startsLine: boolean;
  last: boolean;
}
interface TagTok {
  kind: 'tag';
  sigil: '' | '#' | '^' | '/' | '!' | '&' | '{';
  name: string;
  line: number;
}

const NAME_RE = /^(\.|[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*)$/;

function tokenize(src: string, tname?: string): Array<TextTok | TagTok> {
  const toks: Array<TextTok | TagTok> = [];
  let pos = 0;
  let line = 1;
  const countLines = (s: string): number => s.split('\n').length - 1;
  for (;;) {
    const open = src.indexOf('{{', pos);
    const text = open < 0 ? src.slice(pos) : src.slice(pos, open);
    toks.push({ kind: 'text', text, startsLine: toks.length === 0, last: open < 0 });
    if (open < 0) break;
    line += countLines(text);
    const triple = src.startsWith('{{{', open);
    const closeSeq = triple ? '}}}' : '}}';
    const close = src.indexOf(closeSeq, open + (triple ? 3 : 2));
    if (close < 0) throw new TemplateError('unclosed tag "{{"', line, tname);
    const inner = src.slice(open + (triple ? 3 : 2), close);
    let sigil: TagTok['sigil'] = triple ? '{' : '';
    let body = inner;
    if (!triple && /^[#^/!&>=]/.test(inner)) {
      const c = inner[0]!;
      if (c === '>') throw new TemplateError('partials ({{>name}}) are not supported', line, tname);
      if (c === '=') throw new TemplateError('delimiter changes ({{=...=}}) are not supported', line, tname);
      sigil = c as TagTok['sigil'];
      body = inner.slice(1);
    }
    const name = body.trim();
    if (sigil !== '!' && !NAME_RE.test(name)) throw new TemplateError(`bad tag {{${inner}}}`, line, tname);
    toks.push({ kind: 'tag', sigil, name, line });
    line += countLines(inner);
    pos = close + closeSeq.length;
  }
  return toks;
}

const BLANK = /^[ \t\r]*$/;

/** Remove the lines of standalone section/close/comment tags (mustache's rule). */
function stripStandalone(toks: Array<TextTok | TagTok>): void {
  for (let i = 1; i < toks.length; i += 2) {
    const tag = toks[i] as TagTok;
    if (!['#', '^', '/', '!'].includes(tag.sigil)) continue;
    const prev = toks[i - 1] as TextTok;
    const next = toks[i + 1] as TextTok;
    const nl = prev.text.lastIndexOf('\n');
    const before = nl < 0 ? prev.text : prev.text.slice(nl + 1);
    if (!BLANK.test(before) || (nl < 0 && !prev.startsLine)) continue;
    const nn = next.text.indexOf('\n');
    const after = nn < 0 ? next.text : next.text.slice(0, nn);
    if (!BLANK.test(after) || (nn < 0 && !next.last)) continue;
    prev.text = nl < 0 ? '' : prev.text.slice(0, nl + 1);
    next.text = nn < 0 ? '' : next.text.slice(nn + 1);
    next.startsLine = true;
  }
}

/** Parse a template into its tree (errors: unclosed or mismatched sections, bad tags). */
export function parseTemplate(src: string, tname?: string): Node[] {
  const toks = tokenize(src, tname);
  stripStandalone(toks);
  const root: Node[] = [];
  const stack: Array<{ name: string; line: number; children: Node[] }> = [{ name: '', line: 0, children: root }];
  for (const t of toks) {
    const top = stack[stack.length - 1]!;
    if (t.kind === 'text') {
      if (t.text) top.children.push({ kind: 'text', text: t.text });
      continue;
    }
    switch (t.sigil) {
      case '!':
        break;
      case '#':
      case '^': {
        const node: Node = { kind: 'section', name: t.name, inverted: t.sigil === '^', line: t.line, children: [] };
        top.children.push(node);
        stack.push({ name: t.name, line: t.line, children: node.children });
        break;
      }
      case '/':
        if (stack.length === 1) throw new TemplateError(`{{/${t.name}}} closes no section`, t.line, tname);
        if (top.name !== t.name) throw new TemplateError(`{{/${t.name}}} closes {{#${top.name}}} (line ${top.line})`, t.line, tname);
        stack.pop();
        break;
      default:
        top.children.push({ kind: 'var', name: t.name, line: t.line });
    }
  }
  if (stack.length > 1) {
    const open = stack[stack.length - 1]!;
    throw new TemplateError(`section {{#${open.name}}} is never closed`, open.line, tname);
  }
  return root;
}

const MISSING = Symbol('missing');

function lookup(stack: unknown[], name: string): unknown {
  if (name === '.') return stack[stack.length - 1];
  const [first, ...rest] = name.split('.');
  let v: unknown = MISSING;
  for (let i = stack.length - 1; i >= 0; i--) {
    const c = stack[i];
    if (c !== null && typeof c === 'object' && Object.prototype.hasOwnProperty.call(c, first!)) {
      v = (c as Record<string, unknown>)[first!];
      break;
    }
  }
  for (const k of rest) {
    if (v === MISSING) break;
    v = v !== null && typeof v === 'object' && Object.prototype.hasOwnProperty.call(v, k) ? (v as Record<string, unknown>)[k] : MISSING;
  }
  return v;
}

function falsy(v: unknown): boolean {
  return v === MISSING || v === false || v === null || v === undefined || v === '' || v === 0 || (Array.isArray(v) && v.length === 0);
}

function renderNodes(nodes: Node[], stack: unknown[], o: Required<Pick<RenderOptions, 'strict'>> & RenderOptions, out: string[]): void {
  for (const n of nodes) {
    if (n.kind === 'text') {
      out.push(n.text);
      continue;
    }
    const v = lookup(stack, n.name);
    if (v === MISSING && o.strict) throw new TemplateError(`{{${n.name}}} is not defined`, n.line, o.name);
    if (typeof v === 'function') throw new TemplateError(`{{${n.name}}}: lambdas are not supported`, n.line, o.name);
    if (n.kind === 'var') {
      if (v === MISSING || v === null || v === undefined) continue;
      if (typeof v === 'object') throw new TemplateError(`{{${n.name}}} is a ${Array.isArray(v) ? 'list' : 'map'}, not a value`, n.line, o.name);
      out.push(String(v));
      continue;
    }
    if (n.inverted) {
      if (falsy(v)) renderNodes(n.children, stack, o, out);
    } else if (!falsy(v)) {
      if (Array.isArray(v)) for (const item of v) renderNodes(n.children, [...stack, item], o, out);
      else renderNodes(n.children, [...stack, v], o, out);
    }
  }
}

/** Render `src` with `view` (no HTML escaping). Throws TemplateError (with a line number). */
export function renderTemplate(src: string, view: Record<string, unknown>, o: RenderOptions = {}): string {
  const tree = parseTemplate(src, o.name);
  const out: string[] = [];
  renderNodes(tree, [view], { strict: true, ...o }, out);
  return out.join('');
}
