// `npm start`: reads the configuration, starts a node, stops it gracefully on SIGTERM/SIGINT.
// A configuration error is printed as one line per problem and exits with status 2.

import { ConfigError, loadConfig } from './config/index.ts';
import { dispatchBehaviors, dispatchServices } from './actors/index.ts';
import { startNode } from './node.ts';

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

main().catch((error: unknown) => {
  process.stderr.write(`failed to start: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exit(1);
});
