// What a newcomer does first: `npm start` in embedded mode, a second start on the
// same DATA_DIR by mistake, Ctrl-C through npm. Real processes, real files.

import test from 'ava';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { eventually, launchNodeProcess, START_BOUND_MS, startCommand, startNodeProcess, type NodeProcess } from './helpers/node-process.ts';

const embedded = (dataDir: string) => ({
  DATA_DIR: dataDir, MODE: 'embedded', DATABASE_URL: '', REDIS_URL: '', KAFKA_BROKERS: '', AUTH_DEV_TOKENS: 'true',
});

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'dispatch-first-run-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Every file under dir with the hash of its bytes. */
function fingerprint(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const path = join(d, name);
      if (statSync(path).isDirectory()) walk(path);
      else out.set(relative(dir, path), createHash('sha256').update(readFileSync(path)).digest('hex'));
    }
  };
  walk(dir);
  return out;
}

function stopAll(t: { teardown(fn: () => Promise<unknown>): void }, ...nodes: Pick<NodeProcess, 'child' | 'kill'>[]): void {
  t.teardown(async () => {
    for (const n of nodes) {
      n.child.kill('SIGCONT');
      await n.kill('SIGKILL');
    }
  });
}

async function book(url: string): Promise<void> {
  const tok = await fetch(`${url}/v1/auth/token`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sub: 'r1', role: 'rider' }),
  }).then((r) => r.json() as Promise<{ token: string }>);
  const res = await fetch(`${url}/v1/bookings`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${tok.token}` },
    body: JSON.stringify({ pickup: { lat: 52.52, lng: 13.405 }, dropoff: { lat: 52.5, lng: 13.42 }, vehicleType: 'economy' }),
  });
  if (res.status !== 201) throw new Error(`booking: ${res.status} ${await res.text()}`);
}

test.serial('a second node on the same DATA_DIR exits with one line and leaves the first node\'s files byte-for-byte unchanged', async (t) => {
  const dir = tempDir(t);
  const first = await startNodeProcess('main.ts', embedded(dir));
  stopAll(t, first);
  await book(first.url);
  // Paused, the first node cannot write: any change to its files would be the second node's.
  first.child.kill('SIGSTOP');
  const before = fingerprint(dir);
  t.true(before.size > 3, 'the first node has files in DATA_DIR');

  const second = await startNodeProcess('main.ts', embedded(dir)).then(
    () => t.fail('the second node started'),
    (error: Error) => error.message,
  );
  t.regex(second ?? '', /exited with 1/);
  const lines = (second ?? '').split('\n').filter((l) => l.startsWith('failed to start'));
  t.is(lines.length, 1);
  t.regex(lines[0]!, new RegExp(`DATA_DIR ${dir} is in use by process ${first.child.pid}`));
  t.deepEqual(fingerprint(dir), before);

  first.child.kill('SIGCONT');
  t.is((await fetch(`${first.url}/ready`)).status, 200, 'the first node goes on serving');
});

test.serial('a node killed with SIGKILL leaves a stale lock that the next start takes over', async (t) => {
  const dir = tempDir(t);
  const first = await startNodeProcess('main.ts', embedded(dir));
  await book(first.url);
  await first.kill('SIGKILL');
  const next = await startNodeProcess('main.ts', embedded(dir));
  stopAll(t, next);
  t.true(await eventually(async () => (await fetch(`${next.url}/ready`)).status === 200, 60_000));
});

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  test(`${signal} sent to npm stops \`npm start\` and its node`, async (t) => {
    const dir = tempDir(t);
    const npm = await startCommand('npm', ['start', '--silent'], embedded(dir));
    stopAll(t, npm);
    const started = npm.output.map((l) => { try { return JSON.parse(l) as { msg?: string; pid?: number }; } catch { return {}; } })
      .find((e) => e.msg === 'node started');
    const nodePid = started?.pid;
    t.truthy(nodePid, 'the node logs its pid');
    npm.child.kill(signal);
    const code = await Promise.race([npm.exited, new Promise((r) => setTimeout(() => r('still running'), START_BOUND_MS))]);
    t.not(code, 'still running', 'npm exits');
    // The node shares npm's stdout pipe, so its last lines arrive after npm has exited.
    const gone = await eventually(async () => !alive(nodePid!), 90_000);
    const released = !existsSync(join(dir, '.lock'));
    const graceful = await eventually(async () => stoppedGracefully(npm.output), 60_000);
    if (!gone || !released || !graceful) t.log(npm.output.slice(-20).join('\n'));
    t.true(gone, 'no node process is left');
    t.true(released, 'the node released DATA_DIR');
    t.true(graceful, 'the node says it stopped gracefully');
  });
}

test.serial('a SIGTERM while the node starts stops it gracefully (the embedded database opened to the end first)', async (t) => {
  const dir = tempDir(t);
  const node = launchNodeProcess('main.ts', embedded(dir));
  stopAll(t, node);
  // The lock is the node's first step in DATA_DIR: storage, the port and the log line follow.
  t.true(await eventually(async () => existsSync(join(dir, '.lock')), 60_000, 5), 'the node took DATA_DIR');
  node.child.kill('SIGTERM');
  const code = await Promise.race([node.exited, new Promise((r) => setTimeout(() => r('still running'), START_BOUND_MS))]);
  if (code !== 0) t.log(node.output.slice(-20).join('\n'));
  t.is(code, 0, 'the node exits by itself, not by the signal');
  t.false(existsSync(join(dir, '.lock')), 'the node released DATA_DIR');
  t.true(stoppedGracefully(node.output), 'the node says it stopped gracefully');
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test.serial('Ctrl-C in a terminal (SIGINT to npm and its node together) stops `npm start` gracefully', async (t) => {
  const dir = tempDir(t);
  const npm = await startCommand('npm', ['start', '--silent'], embedded(dir), START_BOUND_MS, { ownGroup: true });
  t.teardown(async () => { try { process.kill(-npm.child.pid!, 'SIGKILL'); } catch { /* gone */ } });
  process.kill(-npm.child.pid!, 'SIGINT'); // the whole group, as a terminal does
  const released = await eventually(async () => !existsSync(join(dir, '.lock')), 90_000);
  const graceful = await eventually(async () => stoppedGracefully(npm.output), 60_000);
  if (!released || !graceful) t.log(npm.output.slice(-20).join('\n'));
  t.true(released, 'the node released DATA_DIR');
  t.true(graceful, 'the node says it stopped gracefully');
});

/**
 * A stop cut short by SHUTDOWN_TIMEOUT_MS also releases the lock; only these lines tell them apart
 * (the second: a signal that came before the node had started, runtime/startup.ts).
 */
function stoppedGracefully(output: readonly string[]): boolean {
  return output.some((l) => l.includes('"msg":"node stopped"') || l.includes('"msg":"node stopped during start-up"'));
}
