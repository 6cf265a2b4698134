// The layering rule, checked on the source (docs/DESIGN.md, "Layers"): the edge (http/) and
// the runtime (runtime/) reach storage, logs and brokers only through ports, never by
// importing adapters/, and the runtime knows no edge (http -> runtime -> actors); the domain
// (actors/) and the configuration (config/) import nothing of the project outside
// themselves (npm packages such as h3-js are allowed). Every static import, `export … from`
// and dynamic `import('…')` counts, type-only ones included.

import test from 'ava';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function tsFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => relative(ROOT, join(e.parentPath, e.name)).split(sep).join('/'))
    .sort();
}

// The project's TypeScript (7, the native compiler) has no JavaScript API to parse with, so
// the specifiers are found by a small tokenizer: comments, string and template contents and
// regular expressions are skipped, so an import written in a comment or a string is not one.

interface Token { readonly kind: 'id' | 'str' | 'tpl' | 're' | 'punct'; readonly value: string }

/** After these words a `/` starts a regular expression, not a division. */
const BEFORE_EXPRESSION = new Set(['return', 'typeof', 'case', 'do', 'else', 'in', 'of', 'new', 'delete', 'void', 'throw', 'yield', 'await', 'instanceof']);

function tokenize(src: string): Token[] {
  const out: Token[] = [];
  /** Brace depth at which each open template `${` returns to its template. */
  const templates: number[] = [];
  let depth = 0;
  let i = 0;
  const regexAllowed = () => {
    const p = out.at(-1);
    if (!p) return true;
    if (p.kind === 'id') return BEFORE_EXPRESSION.has(p.value);
    if (p.kind !== 'punct') return false;
    return !(p.value === ')' || p.value === ']' || p.value === '}');
  };
  /** Scans template text from `j`; returns where code resumes. */
  const template = (j: number): number => {
    while (j < src.length) {
      if (src[j] === '\\') j += 2;
      else if (src[j] === '`') { out.push({ kind: 'tpl', value: '' }); return j + 1; }
      else if (src[j] === '$' && src[j + 1] === '{') { templates.push(depth); return j + 2; }
      else j++;
    }
    return j;
  };
  while (i < src.length) {
    const c = src[i]!;
    if (/\s/.test(c)) { i++; continue; }
    if (c === '/' && src[i + 1] === '/') { const e = src.indexOf('\n', i); i = e < 0 ? src.length : e; continue; }
    if (c === '/' && src[i + 1] === '*') { const e = src.indexOf('*/', i + 2); i = e < 0 ? src.length : e + 2; continue; }
    if (c === '"' || c === "'") {
      let j = i + 1;
      let value = '';
      while (j < src.length && src[j] !== c && src[j] !== '\n') {
        if (src[j] === '\\') { value += src[j + 1] ?? ''; j += 2; } else value += src[j++];
      }
      out.push({ kind: 'str', value });
      i = j + 1;
      continue;
    }
    if (c === '`') { i = template(i + 1); continue; }
    if (c === '}' && templates.length > 0 && templates.at(-1) === depth) { templates.pop(); i = template(i + 1); continue; }
    if (c === '/' && regexAllowed()) {
      let j = i + 1;
      let inClass = false;
      while (j < src.length && src[j] !== '\n') {
        if (src[j] === '\\') { j += 2; continue; }
        if (src[j] === '[') inClass = true;
        else if (src[j] === ']') inClass = false;
        else if (src[j] === '/' && !inClass) break;
        j++;
      }
      j++;
      while (j < src.length && /[a-z]/.test(src[j]!)) j++;
      out.push({ kind: 're', value: src.slice(i, j) });
      i = j;
      continue;
    }
    const word = /^[A-Za-z0-9_$\u0080-\uffff]+/.exec(src.slice(i, i + 200));
    if (word) { out.push({ kind: 'id', value: word[0] }); i += word[0].length; continue; }
    if (c === '{') depth++;
    if (c === '}') depth--;
    out.push({ kind: 'punct', value: c });
    i++;
  }
  return out;
}

/** Every module specifier a file names: imports (type-only too), `export … from`, dynamic `import('…')`. */
export function specifiersOf(source: string): string[] {
  const t = tokenize(source);
  const found: string[] = [];
  const is = (k: number, kind: Token['kind'], value?: string) => t[k]?.kind === kind && (value === undefined || t[k]!.value === value);
  for (let k = 0; k < t.length; k++) {
    if (!is(k, 'id', 'import') && !is(k, 'id', 'export')) continue;
    if (is(k - 1, 'punct', '.')) continue; // a property named import
    if (is(k, 'id', 'import') && is(k + 1, 'punct', '(') && is(k + 2, 'str')) { found.push(t[k + 2]!.value); continue; }
    if (is(k, 'id', 'import') && is(k + 1, 'str')) { found.push(t[k + 1]!.value); continue; }
    // import … from '…' / export { … } from '…' / export * as x from '…': the clause ends at `from` and a string.
    let j = k + 1;
    if (is(k, 'id', 'export')) {
      if (is(j, 'id', 'type')) j++;
      if (!is(j, 'punct', '{') && !is(j, 'punct', '*')) continue;
    } else if (is(j, 'punct', '.') || is(j, 'punct', '(')) continue; // import.meta, import(variable)
    for (; j < t.length && !is(j, 'punct', ';') && !is(j, 'punct', '='); j++) {
      if (is(j, 'id', 'from') && is(j + 1, 'str')) { found.push(t[j + 1]!.value); break; }
      if (is(j, 'id', 'import') || is(j, 'id', 'export')) break;
    }
  }
  return found;
}

interface Import { readonly file: string; readonly specifier: string; readonly target?: string }

/** `target`: the project path a relative specifier resolves to; undefined for a package or `node:` module. */
function importsOf(file: string): Import[] {
  return specifiersOf(readFileSync(join(ROOT, file), 'utf8')).map((specifier) => {
    if (!specifier.startsWith('.')) return { file, specifier };
    const target = relative(ROOT, resolve(ROOT, dirname(file), specifier)).split(sep).join('/');
    return { file, specifier, target };
  });
}

const under = (path: string, dir: string) => path === dir || path.startsWith(`${dir}/`);

/** What breaks the rule, as "file → specifier" lines. */
export function violations(files: readonly string[]): string[] {
  return files.flatMap(importsOf).filter(({ file, target }) => {
    if (target === undefined) return false;
    // Data flows one way, http -> runtime -> actors: the runtime knows no edge either.
    if (under(file, 'runtime')) return under(target, 'adapters') || under(target, 'http');
    if (under(file, 'http')) return under(target, 'adapters');
    if (under(file, 'actors')) return !under(target, 'actors');
    // The configuration is read before anything else exists: it depends on nothing of ours.
    if (under(file, 'config')) return !under(target, 'config');
    return false;
  }).map((i) => `${i.file} → ${i.specifier}`);
}

test('the parser sees static, type-only, re-exported and dynamic imports', (t) => {
  const source = [
    "import { a } from './a.ts';",
    "import type { B } from '../adapters/b.ts';",
    "export { c } from './c.ts';",
    "export * from './d.ts';",
    "const e = await import('./e.ts');",
    "import 'side-effect';",
    "// import { f } from '../adapters/f.ts';",
    "const g = \"import { g } from '../adapters/g.ts'\", h = /['\"]/;",
    "const i = `${'{'}import { i } from '../adapters/i.ts'`, m = import.meta.url;",
    "export const j = 1; export type { K } from './k.ts';",
  ].join('\n');
  t.deepEqual(specifiersOf(source), ['./a.ts', '../adapters/b.ts', './c.ts', './d.ts', './e.ts', 'side-effect', './k.ts']);
});

test('http/ and runtime/ import no adapter, runtime/ no edge, actors/ and config/ nothing of the project outside themselves', (t) => {
  const files = [...tsFiles('http'), ...tsFiles('runtime'), ...tsFiles('actors'), ...tsFiles('config')];
  t.true(files.length > 40, `found only ${files.length} files`);
  const found = violations(files);
  t.deepEqual(found, [], `imports that break the layering (docs/DESIGN.md):\n${found.join('\n')}`);
});

test('the node\'s modules load no cluster client, tracing SDK or password dictionary until configured or used', (t) => {
  // An embedded node never needs kafkajs, ioredis or OpenTelemetry's SDK, and one nobody
  // registers on never needs zxcvbn: node.ts loads them where they are used (README,
  // "Memory of a node"). A module hook in a process of its own sees what importing node.ts
  // (the whole node, main.ts's graph less main itself) resolves.
  const probe = `
    import { registerHooks } from 'node:module';
    const seen = new Set();
    registerHooks({ resolve(specifier, context, next) { seen.add(specifier); return next(specifier, context); } });
    await import('./node.ts');
    process.stdout.write(JSON.stringify([...seen]));`;
  const seen = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', probe], { cwd: ROOT, encoding: 'utf8' })) as string[];
  t.true(seen.includes('koa'), 'the probe sees the node\'s packages');
  const lazy = seen.filter((s) => /^(kafkajs|ioredis|@zxcvbn-ts\/|@opentelemetry\/(sdk-trace|exporter-trace-otlp-http|resources|context-async-hooks|core)$)/.test(s));
  t.deepEqual(lazy, [], 'loaded only where used');
});
