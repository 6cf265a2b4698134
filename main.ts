// `npm start`: reads the configuration, starts a node, stops it gracefully on SIGTERM/SIGINT.
// A configuration error is printed as one line per problem and exits with status 2.

import { ConfigError, loadConfig } from './config/index.ts';
import { dispatchBehaviors, dispatchServices } from './actors/index.ts';
import { startNode } from './node.ts';
import { releaseStartupMemory } from './runtime/startup-memory.ts';
import { StartupStoppedError } from './runtime/startup.ts';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { createLogger, type Logger } from './runtime/logger.ts';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`configuration error:\n${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  // Handlers first: a signal that arrives while the node starts (or just as it logs
  // 'node started') would otherwise meet Node's default action and kill it on the spot,
  // leaving DATA_DIR locked. Such a signal stops start-up where it is (waiting for a
  // dependency included): startNode closes what it opened and fails with StartupStoppedError.
  // One that comes as it has just started stops it as soon as it has.
  let stopping: NodeJS.Signals | undefined;
  let stop: ((signal: NodeJS.Signals) => void) | undefined;
  const starting = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      // Further signals never cut the graceful stop short: Ctrl-C under `npm start` arrives
      // twice (from the terminal, and forwarded by npm), and on a loaded machine the two can
      // be handled seconds apart, so no clock can tell a copy from an operator insisting.
      // The stop is bounded by SHUTDOWN_TIMEOUT_MS instead; SIGKILL stops the node at once.
      process.stderr.write(`${signal}: already stopping (at most ${config.runtime.shutdownTimeoutMs} ms)\n`);
      return;
    }
    stopping = signal;
    if (stop) stop(signal);
    else starting.abort(signal);
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));

  const demoMode = process.env.DEMO === 'true';
  const logger = demoMode ? demoLogger(config.log.level, config.node.id, resolve(config.storage.dataDir, 'node.log')) : undefined;
  const node = await startNode({
    config, behaviors: dispatchBehaviors(config), services: dispatchServices(config), logger, signal: starting.signal,
  });
  const demo = demoMode && !stopping ? await startDemo(node.url) : undefined;
  releaseStartupMemory(STARTUP_SETTLES_MS, (r) => node.logger.info({
    heapTotalMb: [mb(r.heapBefore), mb(r.heapAfter)], rssMb: [mb(r.rssBefore), mb(r.rssAfter)],
  }, 'start-up memory given back'));
  stop = (signal) => {
    const deadline = setTimeout(() => {
      node.logger.error({ shutdownTimeoutMs: config.runtime.shutdownTimeoutMs }, 'graceful shutdown timed out');
      process.exit(1);
    }, config.runtime.shutdownTimeoutMs);
    deadline.unref();
    // The demo's simulator cleans up (cancels its bookings) while the node still serves it.
    void (demo ? demo.stop(signal) : Promise.resolve()).then(() => {
      node.stop(signal).then(() => process.exit(0), (error) => {
        node.logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      });
    });
  };
  if (stopping) stop(stopping);
}

/** Start-up's own background work (first sweeps, catch-ups) is done by then, on a quiet node. */
const STARTUP_SETTLES_MS = 2_000;
const mb = (bytes: number) => Math.round(bytes / 1e6);

/** In the demo the terminal belongs to the simulator's progress line: the node's JSON logs go to a file instead. */
function demoLogger(level: string, nodeId: string, path: string): Logger {
  mkdirSync(resolve(path, '..'), { recursive: true });
  process.stderr.write(`node logs: ${path}\n`);
  return createLogger({ level, nodeId, destination: pino.destination({ dest: path, append: true, sync: true }) });
}

/**
 * `npm run demo`: the simulator against this node, and where to watch it. The simulator
 * runs in a process group of its own, so a Ctrl-C reaches it once, from here: it then
 * cancels its bookings against the still-running node before the node stops. The demo
 * issues development tokens, so package.json binds it to loopback unless HOST says otherwise.
 */
async function startDemo(url: string): Promise<{ stop(signal: NodeJS.Signals): Promise<void> }> {
  const local = url.replace('0.0.0.0', 'localhost');
  const admin = await fetch(`${local}/v1/auth/token`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sub: 'demo-admin', role: 'admin' }),
  })
    .then((r) => r.json() as Promise<{ token: string }>).catch(() => undefined);
  // Printed before the simulator starts, so it does not land in the middle of its progress line. The
  // token rides in the fragment, which browsers never send: no access log or proxy sees it.
  if (admin?.token) process.stderr.write(`watch the city: ${local}/ops#token=${admin.token}\n\n`);
  const sim = spawn(process.execPath, [fileURLToPath(new URL('./scripts/simulate.ts', import.meta.url))], {
    // The IPC channel only tells the simulator when this process is gone (it then exits).
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'], detached: true, env: { ...process.env, URL: local },
  });
  const running = () => sim.exitCode === null && sim.signalCode === null;
  let stopping = false;
  const exited = new Promise<void>((done) => sim.once('exit', (code) => {
    if (!stopping) process.stderr.write(`simulator exited (${code ?? sim.signalCode}); the node keeps running, Ctrl-C stops it\n`);
    done();
  }));
  process.on('exit', () => { if (running()) sim.kill('SIGTERM'); });
  return {
    async stop(signal) {
      stopping = true;
      if (!running()) return;
      sim.kill(signal);
      await Promise.race([exited, new Promise((done) => setTimeout(done, 60_000).unref())]);
    },
  };
}

// Failures an operator fixes by reading one line: no stack trace for them.
const EXPLAINED: Record<string, (e: Error) => string> = {
  data_dir_locked: (e) => e.message,
  embedded_database: (e) => e.message,
  startup_timeout: (e) => e.message,
  EADDRINUSE: (e) => `the port is in use (${e.message}); set PORT to a free one`,
  EACCES: (e) => `no permission: ${e.message}`,
};

main().catch((error: unknown) => {
  // Stopped by a signal before it served: the node has said so and released what it held.
  if (error instanceof StartupStoppedError) process.exit(0);
  const explain = error instanceof Error ? EXPLAINED[String((error as { code?: unknown }).code)] : undefined;
  const text = explain ? explain(error as Error) : error instanceof Error ? error.stack ?? error.message : String(error);
  process.stderr.write(`failed to start: ${text}\n`);
  process.exit(1);
});
