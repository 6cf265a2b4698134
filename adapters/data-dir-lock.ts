// An exclusive lock on DATA_DIR, taken before anything in it is opened: two
// embedded nodes on one directory would both write the same database files
// and the same command log. The lock is a file created with O_EXCL holding
// the owner's pid and host; a lock whose process is gone (a SIGKILL) is stale
// and is taken over, so a crashed node restarts without a manual step.

import { hostname } from 'node:os';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const LOCK_FILE = '.lock';

export class DataDirLockedError extends Error {
  readonly code = 'data_dir_locked';
}

export interface DataDirLock {
  readonly path: string;
  release(): void;
}

interface Owner { readonly pid: number; readonly host: string; readonly since: string }

export function lockDataDir(dir: string): DataDirLock {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, LOCK_FILE);
  const me: Owner = { pid: process.pid, host: hostname(), since: new Date().toISOString() };
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(path, `${JSON.stringify(me)}\n`, { flag: 'wx' });
      return hold(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const owner = readOwner(path);
    if (owner && isAlive(owner)) {
      throw new DataDirLockedError(
        `DATA_DIR ${dir} is in use by process ${owner.pid} on ${owner.host} since ${owner.since}; ` +
        'stop that node or give this one another DATA_DIR');
    }
    rmSync(path, { force: true });
  }
  throw new DataDirLockedError(`DATA_DIR ${dir}: another process keeps taking the lock at ${path}`);
}

// Held locks are also released when the process exits by process.exit (a graceful stop
// that outlived SHUTDOWN_TIMEOUT_MS): nothing writes after exit, so the next start need
// not wait for a pid check. Only a SIGKILL or a crash leaves a lock behind.
const held = new Set<string>();
let exitHooked = false;

function hold(path: string): DataDirLock {
  held.add(path);
  if (!exitHooked) {
    exitHooked = true;
    process.once('exit', () => { for (const p of held) releaseIfMine(p); });
  }
  return {
    path,
    release: () => {
      held.delete(path);
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
function isAlive(owner: Owner): boolean {
  if (owner.host !== hostname()) return true;
  if (owner.pid === process.pid) return true;
  try {
    process.kill(owner.pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function releaseIfMine(path: string): void {
  const owner = readOwner(path);
  if (owner?.pid === process.pid && owner.host === hostname()) rmSync(path, { force: true });
}
