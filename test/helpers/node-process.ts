// Starts a node (or a fixture node) as a real child process and finds its URL in its logs.

import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

/**
 * How long a test waits for a node to say it started. Generous: CI machines have two
 * shared cores, and a first start compiles PGlite's WebAssembly and runs initdb.
 */
export const START_BOUND_MS = 240_000;

/** What every node under test runs with unless a test says otherwise. */
const NODE_DEFAULTS = {
  LOG_LEVEL: 'info', PORT: '0', HOST: '127.0.0.1',
  // A slow machine is not a damaged database: the start bound above decides, not the node.
  EMBEDDED_OPEN_TIMEOUT_MS: String(START_BOUND_MS + 60_000),
};

export interface NodeProcess {
  readonly url: string;
  readonly child: ChildProcess;
  readonly output: string[];
  kill(signal?: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
}

export function startNodeProcess(script: string, env: Record<string, string>, timeoutMs = START_BOUND_MS): Promise<NodeProcess> {
  return startCommand(process.execPath, [script], env, timeoutMs);
}

export interface StartOptions {
  /** In a process group of its own, it can be signalled as a terminal's Ctrl-C signals one. */
  readonly ownGroup?: boolean;
  /** Variables of this process the child must not inherit (a service address, a secret). */
  readonly unset?: readonly string[];
  /** Told the child as soon as it is spawned (to kill it whatever ends the caller). */
  readonly onSpawn?: (child: ChildProcess) => void;
  /** Every line of its output, as it comes (to keep a log). */
  readonly onLine?: (line: string) => void;
}

/** Any command that ends up running a node (`npm start`, say), found started by its log line. */
export async function startCommand(
  command: string, args: readonly string[], env: Record<string, string>, timeoutMs = START_BOUND_MS, options: StartOptions = {},
): Promise<NodeProcess> {
  const inherited = { ...process.env };
  for (const name of options.unset ?? []) delete inherited[name];
  const child = spawn(command, args, {
    cwd: repoRoot,
    detached: options.ownGroup ?? false,
    env: { ...inherited, ...NODE_DEFAULTS, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  options.onSpawn?.(child);
  const output: string[] = [];
  const keep = (line: string) => { output.push(line); options.onLine?.(line); };
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  createInterface({ input: child.stderr! }).on('line', keep);
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      // A node that did not start in time is not left running behind the test.
      child.kill('SIGKILL');
      reject(new Error(`node did not start within ${timeoutMs} ms:\n${output.slice(-30).join('\n')}`));
    }, timeoutMs);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      keep(line);
      try {
        const entry = JSON.parse(line) as { url?: string; msg?: string };
        if (entry.url && (entry.msg === 'fixture ready' || entry.msg === 'node started')) { clearTimeout(timer); resolve(entry.url); }
      } catch { /* not JSON */ }
    });
    void exited.then((code) => { clearTimeout(timer); reject(new Error(`node exited with ${code} before it started:\n${output.slice(-30).join('\n')}`)); });
  });
  return {
    url, child, output, exited,
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** A free TCP port on 127.0.0.1 (for a node whose port must be known before it logs it). */
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * A node process that is not waited for: for start-up tests, which look at it (its
 * output, /health, /ready) before it has started. Killed in teardown by the caller.
 */
export function launchNodeProcess(script: string, env: Record<string, string>): Omit<NodeProcess, 'url'> & { started: Promise<string> } {
  const child = spawn(process.execPath, [script], {
    cwd: repoRoot,
    env: { ...process.env, ...NODE_DEFAULTS, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  createInterface({ input: child.stderr! }).on('line', (line) => output.push(line));
  const started = new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      output.push(line);
      try {
        const entry = JSON.parse(line) as { url?: string; msg?: string };
        if (entry.url && (entry.msg === 'fixture ready' || entry.msg === 'node started')) resolve(entry.url);
      } catch { /* not JSON */ }
    });
    void exited.then((code) => reject(new Error(`node exited with ${code} before it started:\n${output.slice(-30).join('\n')}`)));
  });
  started.catch(() => undefined);
  return {
    child, output, exited, started,
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/**
 * Polls `check` until it returns true or the time runs out. The default bound is
 * generous on purpose: a loaded 2-core machine is slow, and a passing check
 * returns as soon as it holds, so only a real failure waits it out.
 */
export async function eventually(check: () => Promise<boolean>, timeoutMs = 60_000, everyMs = 50): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return true;
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
