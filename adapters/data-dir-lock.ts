// An exclusive lock on DATA_DIR, taken before anything in it is opened: two
// embedded nodes on one directory would both write the same database files
// and the same command log. The lock is a file created with O_EXCL holding
// the owner's pid and host and, where /proc exists, the boot id and the
// process's start time; a lock whose process is gone (a SIGKILL) is stale
// and is taken over, so a crashed node restarts without a manual step.
//
// A pid alone does not say the process is gone: a container restarted after an
// OOM kill runs `node main.ts` as PID 1 again on the same hostname, and a busy
// host hands pids out again. So a lock is live only if a process with its pid
// exists and, where /proc exists, started when the lock says, on this boot.
// Without /proc (macOS) the pid decides, and a lock with our own pid is stale:
// we are only now taking it.

import { hostname } from 'node:os';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const LOCK_FILE = '.lock';

export class DataDirLockedError extends Error {
  readonly code = 'data_dir_locked';
}

export interface DataDirLock {
  readonly path: string;
  release(): void;
}

export interface DataDirLockOptions {
  /** Where procfs is mounted (tests: a directory without it, as on macOS). */
  readonly proc?: string;
}

/** Which process, on which boot: a pid and a start time are unique within one boot. */
export interface ProcessIdentity {
  /** /proc/sys/kernel/random/boot_id. */
  readonly boot: string;
  /** Field 22 of /proc/<pid>/stat: clock ticks from boot to the process's start. */
  readonly start: string;
}

/** Older versions wrote pid, host and since only. */
interface Owner extends Partial<ProcessIdentity> { readonly pid: number; readonly host: string; readonly since: string }

const PROC = '/proc';

export function lockDataDir(dir: string, options: DataDirLockOptions = {}): DataDirLock {
  const proc = options.proc ?? PROC;
  mkdirSync(dir, { recursive: true });
  const path = join(dir, LOCK_FILE);
  const me: Owner = { pid: process.pid, host: hostname(), since: new Date().toISOString(), ...processIdentity(process.pid, proc) };
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(path, `${JSON.stringify(me)}\n`, { flag: 'wx' });
      return hold(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const owner = readOwner(path);
    if (owner && isLive(owner, path, proc)) {
      throw new DataDirLockedError(
        `DATA_DIR ${dir} is in use by process ${owner.pid} on ${owner.host} since ${owner.since}; ` +
        'stop that node or give this one another DATA_DIR');
    }
    rmSync(path, { force: true });
  }
  throw new DataDirLockedError(`DATA_DIR ${dir}: another process keeps taking the lock at ${path}`);
}

/** The process's boot and start time; undefined where /proc cannot say (no procfs, no such process). */
export function processIdentity(pid: number, proc = PROC): ProcessIdentity | undefined {
  try {
    const stat = readFileSync(join(proc, String(pid), 'stat'), 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces and parentheses itself.
    const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[22 - 3];
    const boot = readFileSync(join(proc, 'sys', 'kernel', 'random', 'boot_id'), 'utf8').trim();
    return start && boot ? { boot, start } : undefined;
  } catch {
    return undefined;
  }
}

// Held locks are also released when the process exits by process.exit (a graceful stop
// that outlived SHUTDOWN_TIMEOUT_MS): nothing writes after exit, so the next start need
// not wait for a pid check. Only a SIGKILL or a crash leaves a lock behind.
const held = new Set<string>();
let exitHooked = false;

function hold(path: string): DataDirLock {
  held.add(resolve(path));
  if (!exitHooked) {
    exitHooked = true;
    process.once('exit', () => { for (const p of held) releaseIfMine(p); });
  }
  return {
    path,
    release: () => {
      held.delete(resolve(path));
      releaseIfMine(path);
    },
  };
}

function readOwner(path: string): Owner | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Owner;
  } catch {
    return undefined; // unreadable or half-written: treated as stale
  }
}

/** A lock from another host cannot be checked, so it is held to be live. */
function isLive(owner: Owner, path: string, proc: string): boolean {
  if (owner.host !== hostname()) return true;
  // Ours only if this process took it (a second node in one process); any other with our pid is an earlier process's.
  if (owner.pid === process.pid) return held.has(resolve(path));
  if (!existsSync(join(proc, 'self', 'stat'))) return pidExists(owner.pid);
  const now = processIdentity(owner.pid, proc);
  // Hidden from us (procfs mounted hidepid): it exists if a signal can find it, and cannot be told apart further.
  if (!now) return pidExists(owner.pid);
  if (owner.boot !== undefined && owner.boot !== now.boot) return false;
  return owner.start === undefined || owner.start === now.start;
}

function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function releaseIfMine(path: string): void {
  const owner = readOwner(path);
  if (owner?.pid === process.pid && owner.host === hostname()) rmSync(path, { force: true });
}
