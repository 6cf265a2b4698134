// The embedded database's own thread (see embedded.ts): PGlite, PostgreSQL compiled to
// WebAssembly, and the socket server that speaks the PostgreSQL wire protocol for it on a
// loopback port of its own (the main thread relays the node's SQL port to it). A statement
// runs synchronously inside WebAssembly and holds this thread for as long as it runs (a
// lock wait on a damaged directory is a busy loop that never ends); here that costs
// nothing but this thread, and the main thread, which watches the clock below, can end it
// with worker.terminate().

import { mkdirSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';

/**
 * PostgreSQL settings of the embedded database. shared_buffers: 16 MB instead of 128 MB,
 * which PostgreSQL touches (zeroes) when it starts, so it was resident even in an empty
 * node; an embedded node's working set (recent journal rows, small views) fits.
 */
const POSTGRESQL_CONF: readonly string[] = ['shared_buffers=16MB'];

export interface WorkerInput {
  readonly dataDir: string;
  /** One BigInt64: Date.now() when the protocol message running now started, 0 when idle. */
  readonly busy: SharedArrayBuffer;
}

/** Worker to main thread. */
export type WorkerMessage =
  | { readonly kind: 'ready'; readonly port: number }
  | { readonly kind: 'failed'; readonly message: string }
  | { readonly kind: 'stopped' };

/** Main thread to worker. */
export type ParentMessage = { readonly kind: 'stop' };

const parent = parentPort;
if (!parent) throw new Error('embedded-worker.ts runs in a worker thread (see embedded.ts)');
const input = workerData as WorkerInput;
const busy = new BigInt64Array(input.busy);
const post = (message: WorkerMessage) => parent.postMessage(message);

let db: PGlite | undefined;
let server: PGLiteSocketServer | undefined;

parent.on('message', (message: ParentMessage) => {
  if (message.kind !== 'stop') return;
  void (async () => {
    try {
      await server?.stop();
      await db?.close();
    } finally {
      post({ kind: 'stopped' });
      parent.close();
    }
  })();
});

try {
  mkdirSync(input.dataDir, { recursive: true });
  db = await PGlite.create({ dataDir: input.dataDir, postgresqlconf: [...POSTGRESQL_CONF] });
  await db.query('select 1');
  // Every protocol message the socket server hands PGlite passes here: the main thread
  // sees how long the one running now has been running, even while it blocks this thread.
  const exec = db.execProtocolRawStream.bind(db);
  db.execProtocolRawStream = async (...args: Parameters<typeof exec>) => {
    Atomics.store(busy, 0, BigInt(Date.now()));
    try {
      return await exec(...args);
    } finally {
      Atomics.store(busy, 0, 0n);
    }
  };
  // PGlite serves one connection at a time: the pool in front of it holds one.
  server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections: 1 });
  await server.start();
  post({ kind: 'ready', port: Number(server.getServerConn().split(':').at(-1)) });
} catch (error) {
  post({ kind: 'failed', message: error instanceof Error ? error.message : String(error) });
}
