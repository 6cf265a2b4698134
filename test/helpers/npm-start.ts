// How a node process is started. package.json's `start` script is the one written copy
// of it: the variables set before `exec node`, then Node's flags before main.ts (memory
// settings of the process, README "Memory of a node"). The Dockerfile repeats them (ENV and
// CMD; test/start-command.test.ts holds them equal) and the bench starts its node with what
// is read here, so the node it measures is the node `npm start` and the image run.

import { readFileSync } from 'node:fs';

export interface StartCommand {
  /** Variables set for the process (glibc reads its malloc settings from the environment at exec). */
  readonly env: Readonly<Record<string, string>>;
  /** Node's (and V8's) flags before the script. */
  readonly flags: readonly string[];
  readonly script: string;
}

/** `[NAME=value ...] exec node [--flag ...] script.ts`: nothing else is allowed (no quoting, no other command). */
export function parseStartScript(script: string): StartCommand {
  const words = script.trim().split(/\s+/);
  const env: Record<string, string> = {};
  let at = 0;
  for (; at < words.length && /^[A-Z_][A-Z0-9_]*=/.test(words[at]!); at++) {
    const word = words[at]!;
    const eq = word.indexOf('=');
    env[word.slice(0, eq)] = word.slice(eq + 1);
  }
  if (words[at] !== 'exec' || words[at + 1] !== 'node') throw new Error(`start script: expected [NAME=value ...] exec node [flags] script, got: ${script}`);
  const rest = words.slice(at + 2);
  const flags = rest.slice(0, -1);
  const file = rest.at(-1);
  if (!file || !file.endsWith('.ts') || flags.some((f) => !f.startsWith('--') || /['"$`\\]/.test(f))) {
    throw new Error(`start script: expected [NAME=value ...] exec node [flags] script, got: ${script}`);
  }
  return { env, flags, script: file };
}

/** What `npm start` runs, read from package.json. */
export function npmStart(): StartCommand {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { scripts: Record<string, string> };
  return parseStartScript(pkg.scripts.start!);
}
