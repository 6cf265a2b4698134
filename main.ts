// `npm start`: reads the configuration, starts a node, stops it gracefully on SIGTERM/SIGINT.
// A configuration error is printed as one line per problem and exits with status 2.

import { ConfigError, loadConfig } from './config/index.ts';
import { dispatchBehaviors, dispatchServices } from './actors/index.ts';
import { startNode } from './node.ts';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

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
  const node = await startNode({ config, behaviors: dispatchBehaviors(config), services: dispatchServices(config) });
  if (process.env.DEMO === 'true') startDemo(node.url, config.http.port);
  let signals = 0;
  const shutdown = (signal: string) => {
    if (++signals > 1) {
      node.logger.warn({ signal }, 'second signal: exiting now');
      process.exit(130);
    }
    const deadline = setTimeout(() => {
      node.logger.error('graceful shutdown timed out');
      process.exit(1);
    }, config.runtime.shutdownTimeoutMs);
    deadline.unref();
    node.stop(signal).then(() => process.exit(0), (error) => {
      node.logger.error({ err: error }, 'shutdown failed');
      process.exit(1);
    });
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

/** `npm run demo`: the simulator against this node, and where to watch it. */
function startDemo(url: string, port: number): void {
  const local = url.replace('0.0.0.0', 'localhost');
  const sim = spawn(process.execPath, [fileURLToPath(new URL('./scripts/simulate.ts', import.meta.url))], {
    stdio: 'inherit', env: { ...process.env, URL: local, SPEEDUP: process.env.SPEEDUP ?? '10' },
  });
  process.on('exit', () => sim.kill());
  void fetch(`${local}/v1/auth/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sub: 'demo-admin', role: 'admin' }) })
    .then((r) => r.json() as Promise<{ token: string }>)
    .then(({ token }) => process.stderr.write(`\nwatch the city: http://localhost:${port}/ops?token=${token}\n\n`), () => undefined);
}

main().catch((error: unknown) => {
  process.stderr.write(`failed to start: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exit(1);
});
