// The DATA_DIR lock (adapters/data-dir-lock.ts) tells a live owner from a dead one whose pid
// came round again: a container restarted after an OOM kill runs `node main.ts` as PID 1 again,
// on the same hostname, and must take its own stale lock over. A lock is live only if its
// process exists and, where /proc exists, started when the lock says, on this boot.

import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataDirLockedError, lockDataDir, processIdentity } from '../adapters/data-dir-lock.ts';

const hasProc = existsSync('/proc/self/stat');

function tempDir(t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'lock-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A lock file as a node that is gone (or not) left it. */
function leave(dir: string, owner: Record<string, unknown>): void {
  writeFileSync(join(dir, '.lock'), `${JSON.stringify({ host: hostname(), since: 'before the crash', ...owner })}\n`);
}

/** Another live process on this host, killed when the test ends. */
async function sleeper(t: ExecutionContext): Promise<number> {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 600_000)'], { stdio: 'ignore' });
  t.teardown(() => { child.kill('SIGKILL'); });
  await new Promise((resolve) => child.once('spawn', resolve));
  return child.pid!;
}

function takes(t: ExecutionContext, dir: string, options?: Parameters<typeof lockDataDir>[1]): void {
  const lock = lockDataDir(dir, options);
  t.teardown(() => lock.release());
  const owner = JSON.parse(readFileSync(join(dir, '.lock'), 'utf8')) as { pid: number };
  t.is(owner.pid, process.pid, 'the lock is ours now');
}

function refuses(t: ExecutionContext, dir: string, pid: number, options?: Parameters<typeof lockDataDir>[1]): void {
  const error = t.throws(() => lockDataDir(dir, options), { instanceOf: DataDirLockedError });
  const expected = `^DATA_DIR ${dir} is in use by process ${pid} on ${hostname()} since .*; stop that node or give this one another DATA_DIR$`;
  t.regex(error!.message, new RegExp(expected));
  t.false(error!.message.includes('\n'), 'one line');
}

test('the lock file says who holds it: pid, host, and where /proc exists the boot and the process start time', (t) => {
  const dir = tempDir(t);
  takes(t, dir);
  const owner = JSON.parse(readFileSync(join(dir, '.lock'), 'utf8')) as Record<string, unknown>;
  t.is(owner.host, hostname());
  if (!hasProc) return t.pass('no /proc here: pid and host only');
  t.deepEqual({ boot: owner.boot, start: owner.start }, processIdentity(process.pid));
  t.regex(String(owner.boot), /^[0-9a-f-]{36}$/);
  t.regex(String(owner.start), /^\d+$/);
});

test('a lock left with our pid by an older process (the same pid after a container restart) is taken over', (t) => {
  const dir = tempDir(t);
  const me = processIdentity(process.pid);
  leave(dir, { pid: process.pid, ...(me ? { boot: me.boot, start: String(Number(me.start) - 1) } : {}) });
  takes(t, dir);
});

test('a lock with our pid from another boot is taken over', (t) => {
  const dir = tempDir(t);
  const me = processIdentity(process.pid);
  leave(dir, { pid: process.pid, boot: '00000000-0000-0000-0000-000000000000', start: me?.start ?? '1' });
  takes(t, dir);
});

test('an old-format lock (pid and host only) with our pid is taken over', (t) => {
  const dir = tempDir(t);
  leave(dir, { pid: process.pid });
  takes(t, dir);
});

test('a lock of a live process on this host is refused with one line naming it', async (t) => {
  const dir = tempDir(t);
  const pid = await sleeper(t);
  leave(dir, { pid, ...processIdentity(pid) });
  refuses(t, dir, pid);
  t.is((JSON.parse(readFileSync(join(dir, '.lock'), 'utf8')) as { pid: number }).pid, pid, 'its lock is left as it was');
});

test('a lock whose pid is now another process (another start time) is taken over', async (t) => {
  if (!hasProc) return t.pass('needs /proc');
  const dir = tempDir(t);
  const pid = await sleeper(t);
  const live = processIdentity(pid)!;
  leave(dir, { pid, boot: live.boot, start: String(Number(live.start) + 1) });
  takes(t, dir);
});

test('an old-format lock of a live process is refused, and of a process that is gone is taken over', async (t) => {
  const dir = tempDir(t);
  const pid = await sleeper(t);
  leave(dir, { pid });
  refuses(t, dir, pid);
  const gone = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
  await new Promise((resolve) => gone.once('exit', resolve));
  leave(dir, { pid: gone.pid });
  takes(t, dir);
});

test('without /proc (macOS) the pid decides: a live process\'s lock is refused, one with our pid is taken over', async (t) => {
  const dir = tempDir(t);
  const noProc = { proc: join(dir, 'no-proc') };
  const pid = await sleeper(t);
  leave(dir, { pid, boot: 'from-elsewhere', start: '1' });
  refuses(t, dir, pid, noProc);
  leave(dir, { pid: process.pid, boot: 'from-elsewhere', start: '1' });
  takes(t, dir, noProc);
});

test('a lock this process holds is refused to a second taker in it, and released by its holder', (t) => {
  const dir = tempDir(t);
  const lock = lockDataDir(dir);
  refuses(t, dir, process.pid);
  lock.release();
  t.false(existsSync(join(dir, '.lock')));
  takes(t, dir);
});

test('a lock from another host is held to be live', (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, '.lock'), JSON.stringify({ pid: process.pid, host: 'elsewhere', since: 'earlier' }));
  const error = t.throws(() => lockDataDir(dir), { instanceOf: DataDirLockedError });
  t.regex(error!.message, /in use by process \d+ on elsewhere since earlier/);
});
