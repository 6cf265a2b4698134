// A redis-server of a suite's own on a given port (nothing saved), for suites that kill it or
// read its command counts, which the shared Redis of the other suites would muddle.

import { spawn, type ChildProcess } from 'node:child_process';

export function startOwnRedis(port: number): Promise<ChildProcess> {
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  return new Promise((resolve, reject) => {
    child.once('error', (e) => reject(new Error(`redis-server could not be started for this suite: ${e.message}`)));
    setTimeout(() => resolve(child), 300);
  });
}
