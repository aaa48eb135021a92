import { describe, expect, it } from 'vitest';
import { parseTemplate, renderTemplate, TemplateError } from '../../osbuilder/src/rootfs/template';

const r = (src: string, view: Record<string, unknown> = {}, strict = true): string => renderTemplate(src, view, { strict });

describe('rootfs template renderer', () => {
  it('substitutes values, never HTML-escaping them', () => {
    expect(r('Hello {{name}}!', { name: 'world' })).toBe('Hello world!');
    expect(r('{{a}} {{{a}}} {{&a}}', { a: '<&"\'>' })).toBe('<&"\'> <&"\'> <&"\'>');
    expect(r('{{n}} {{t}} {{f}}', { n: 42, t: true, f: false })).toBe('42 true false');
    expect(r('{{ spaced }}', { spaced: 'x' })).toBe('x');
  });

  it('resolves dotted names and walks up the context stack', () => {
    const view = { agent: { version: '1.2', commit: 'abc' }, distro: 'debian', items: [{ name: 'a' }, { name: 'b' }] };
    expect(r('{{agent.version}}/{{agent.commit}}', view)).toBe('1.2/abc');
    expect(r('{{#items}}{{name}}@{{distro}};{{/items}}', view)).toBe('a@debian;b@debian;');
    expect(r('{{#agent}}{{version}}{{/agent}}', view)).toBe('1.2');
  });

  it('iterates lists with {{.}}, skips empty ones, renders truthy values once', () => {
    expect(r('{{#xs}}[{{.}}]{{/xs}}', { xs: ['a', 'b', 'c'] })).toBe('[a][b][c]');
    expect(r('{{#xs}}[{{.}}]{{/xs}}', { xs: [] })).toBe('');
    expect(r('{{#on}}yes{{/on}}{{#off}}no{{/off}}', { on: true, off: false })).toBe('yes');
    expect(r('{{#s}}<{{.}}>{{/s}}', { s: 'str' })).toBe('<str>');
    expect(r('{{#z}}zero{{/z}}{{#e}}empty{{/e}}{{#n}}null{{/n}}', { z: 0, e: '', n: null })).toBe('');
  });

  it('renders inverted sections for falsy values and empty lists only', () => {
    const src = '{{^xs}}none{{/xs}}{{^flag}}off{{/flag}}';
    expect(r(src, { xs: [], flag: false })).toBe('noneoff');
    expect(r(src, { xs: ['a'], flag: true })).toBe('');
  });

  it('nests sections', () => {
    const view = { groups: [{ g: 'x', members: ['1', '2'] }, { g: 'y', members: [] }] };
    expect(r('{{#groups}}{{g}}:{{#members}}{{.}},{{/members}}{{^members}}-{{/members}};{{/groups}}', view)).toBe('x:1,2,;y:-;');
  });

  it('drops comments', () => {
    expect(r('a{{! a comment }}b{{!\nmulti\nline}}c')).toBe('abc');
  });

  it('removes the lines of standalone section and comment tags', () => {
    const src = ['packages:', '{{#pkgs}}', '  - {{.}}', '{{/pkgs}}', '{{! note }}', 'end', ''].join('\n');
    expect(r(src, { pkgs: ['crun', 'busybox'] })).toBe('packages:\n  - crun\n  - busybox\nend\n');
    expect(r(src, { pkgs: [] })).toBe('packages:\nend\n');
    // Indented standalone tags, CRLF line ends, a tag on the last line without a newline.
    expect(r('a\r\n  {{#x}}  \r\nb\r\n  {{/x}}', { x: true })).toBe('a\r\nb\r\n');
    // A standalone tag on the first line.
    expect(r('{{#x}}\nfirst\n{{/x}}\n', { x: true })).toBe('first\n');
  });

  it('keeps the line when a section tag shares it with other content', () => {
    expect(r('list:{{^xs}} []{{/xs}}\n', { xs: [] })).toBe('list: []\n');
    expect(r('list:{{^xs}} []{{/xs}}\n', { xs: ['a'] })).toBe('list:\n');
    expect(r('  {{#x}}inline{{/x}}  \n', { x: true })).toBe('  inline  \n');
    // Two tags on one line are not standalone.
    expect(r('{{#x}}{{/x}}\nz', { x: true })).toBe('\nz');
    // A variable alone on its line is not standalone: its line stays.
    expect(r('{{v}}\nz', { v: '' })).toBe('\nz');
  });

  it('in strict mode (the default), an unknown name is an error naming its line', () => {
    expect(() => r('ok\n{{nope}}', {})).toThrow(TemplateError);
    expect(() => r('ok\n{{nope}}', {})).toThrow(/2: \{\{nope\}\} is not defined/);
    expect(() => r('{{#nope}}x{{/nope}}', {})).toThrow(/is not defined/);
    expect(() => r('{{a.b}}', { a: {} })).toThrow(/a\.b/);
    expect(renderTemplate('[{{nope}}]', {}, { strict: false })).toBe('[]');
    expect(() => renderTemplate('{{x}}', {}, { name: 'etc/hostname' })).toThrow(/^etc\/hostname:1:/);
  });

  it('rejects lists or maps as values, lambdas, partials and delimiter changes', () => {
    expect(() => r('{{xs}}', { xs: ['a'] })).toThrow(/is a list/);
    expect(() => r('{{m}}', { m: { a: 1 } })).toThrow(/is a map/);
    expect(() => r('{{f}}', { f: () => 'x' })).toThrow(/lambdas/);
    expect(() => parseTemplate('{{> partial}}')).toThrow(/partials/);
    expect(() => parseTemplate('{{=<% %>=}}')).toThrow(/delimiter/);
  });

  it('reports unclosed and mismatched sections and bad tags with line numbers', () => {
    expect(() => parseTemplate('a\n{{#x}}\nb')).toThrow(/2: section \{\{#x\}\} is never closed/);
    expect(() => parseTemplate('{{#x}}\n{{/y}}')).toThrow(/2: \{\{\/y\}\} closes \{\{#x\}\} \(line 1\)/);
    expect(() => parseTemplate('{{/x}}')).toThrow(/closes no section/);
    expect(() => parseTemplate('a {{ b')).toThrow(/unclosed tag/);
    expect(() => parseTemplate('{{bad name}}')).toThrow(/bad tag/);
    expect(() => parseTemplate('{{}}')).toThrow(/bad tag/);
  });

  it('leaves text without tags, and lone braces, alone', () => {
    expect(r('no tags { } here}}\n')).toBe('no tags { } here}}\n');
    expect(r('')).toBe('');
  });
});
