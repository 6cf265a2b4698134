// Embedded PostgreSQL for the default mode: PGlite (PostgreSQL compiled to WASM,
// real SQL, persistent in a directory) served on a loopback port over the
// PostgreSQL wire protocol, so MikroORM and its driver connect to it exactly as
// to a server. PGlite runs one connection at a time: the pool must hold one.
//
// PGlite runs in a worker thread (embedded-worker.ts), never on the main thread: a
// statement runs synchronously inside WebAssembly, and on a damaged directory one can
// spin forever (a lock wait on a transaction that will never end is a busy loop in
// PGlite). On the main thread that froze the whole node: no /health, no SIGTERM. Here
// the main thread holds the SQL port and relays each connection to the worker's own
// socket server (non-blocking I/O, nothing more), and watches the worker:
//  - opening: the database must answer `select 1` within openTimeoutMs, or opening fails
//    with one line naming the directory (EmbeddedDatabaseError);
//  - each statement: PGlite ignores statement_timeout (no timers inside WebAssembly), so
//    the worker marks when the statement running now started and the main thread, once
//    it has run longer than statementTimeoutMs, answers it as PostgreSQL would (error
//    57014, "canceling statement due to statement timeout"), closes its connection,
//    terminates the worker (which stops even spinning WebAssembly) and opens the
//    database again. The SQL port stays the same and keeps accepting meanwhile:
//    connections made while the database reopens are relayed once it answers.

import { spawn } from 'node:child_process';
import { existsSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import type { ParentMessage, WorkerInput, WorkerMessage } from './embedded-worker.ts';
import { inProcessConnection } from './in-process-socket.ts';

export const DEFAULT_OPEN_TIMEOUT_MS = 180_000;
export const DEFAULT_EMBEDDED_STATEMENT_TIMEOUT_MS = 30_000;
/** A clean stop (PGlite's own close, a checkpoint) gets this long before the worker is terminated. */
const STOP_GRACE_MS = 5_000;

/** The part of a pino logger this uses. */
export interface EmbeddedLogger {
  info(object: object, message: string): void;
  error(object: object, message: string): void;
}

export interface EmbeddedPostgresOptions {
  readonly dataDir: string;
  /** The SQL port on 127.0.0.1; 0 (default) picks a free one. */
  readonly port?: number;
  /** The database must open and answer `select 1` within this long. Default 60 s. */
  readonly openTimeoutMs?: number;
  /** A statement running longer is cancelled (57014) by restarting the database. Default 30 s; 0 never. */
  readonly statementTimeoutMs?: number;
  readonly logger?: EmbeddedLogger;
}

export interface EmbeddedPostgres {
  readonly url: string;
  /**
   * A connection made in-process, as `url` would make one over TCP: the same relay, the same
   * statement timeout; the client end is for pg's `stream` option (in-process-socket.ts).
   */
  connect(): Duplex;
  /** Why the database cannot serve right now, in words fit for /ready (no paths); undefined when it can. */
  problem(): string | undefined;
  /** How often a statement ran over the timeout or the worker died, and the database was restarted. */
  restarts(): number;
  stop(): Promise<void>;
}

/**
 * The embedded database failed in a way an operator fixes by reading one line (a damaged
 * or stuck directory): its stack is that line too, so whoever prints the stack prints it.
 */
export class EmbeddedDatabaseError extends Error {
  override readonly name = 'EmbeddedDatabaseError';
  readonly code = 'embedded_database';
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.stack = message;
  }
}

const WORKER_URL = new URL('./embedded-worker.ts', import.meta.url);
const INIT_PATH = fileURLToPath(new URL('./embedded-init.ts', import.meta.url));

/** A directory that holds nothing yet (or does not exist): the database is created in it. */
function isNew(dir: string): boolean {
  return !existsSync(dir) || readdirSync(dir).length === 0;
}

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const database = new EmbeddedDatabase(options);
  await database.start();
  return database;
}

const seconds = (ms: number) => `${Math.round(ms / 100) / 10} s`;
const oneLine = (text: string) => text.replace(/\s*\n\s*/g, ' ').trim();
const ADVICE = 'it may be damaged; move it aside or restore a backup';

class EmbeddedDatabase implements EmbeddedPostgres {
  readonly #dataDir: string;
  readonly #openTimeoutMs: number;
  readonly #statementTimeoutMs: number;
  readonly #logger: EmbeddedLogger | undefined;
  readonly #busy = new SharedArrayBuffer(8);
  readonly #busySince = new BigInt64Array(this.#busy);
  readonly #stopping = new AbortController();
  readonly #server: Server;
  readonly #links = new Set<Link>();
  /** Connections accepted while the database (re)opens: relayed once it answers. */
  readonly #waiting = new Set<Duplex>();
  #port: number;
  #worker: Worker | undefined;
  /** The worker's own port while it serves; undefined while opening or restarting. */
  #upstream: number | undefined;
  #problem: string | undefined = 'the embedded database is opening';
  #restarts = 0;
  #watchdog: NodeJS.Timeout | undefined;

  constructor(options: EmbeddedPostgresOptions) {
    this.#dataDir = options.dataDir;
    this.#port = options.port ?? 0;
    this.#openTimeoutMs = options.openTimeoutMs ?? DEFAULT_OPEN_TIMEOUT_MS;
    this.#statementTimeoutMs = options.statementTimeoutMs ?? DEFAULT_EMBEDDED_STATEMENT_TIMEOUT_MS;
    this.#logger = options.logger;
    this.#server = createServer((socket) => this.#accept(socket));
  }

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.#port}/postgres`;
  }

  connect(): Duplex {
    const { client, server } = inProcessConnection();
    this.#accept(server);
    return client;
  }

  problem(): string | undefined {
    return this.#problem;
  }

  restarts(): number {
    return this.#restarts;
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.#port, '127.0.0.1', () => { this.#server.off('error', reject); resolve(); });
    });
    this.#port = (this.#server.address() as { port: number }).port;
    try {
      if (isNew(this.#dataDir)) await this.#create();
      await this.#open();
    } catch (error) {
      await this.stop();
      throw error;
    }
    if (this.#statementTimeoutMs > 0) {
      this.#watchdog = setInterval(() => this.#watch(), Math.max(50, Math.min(1_000, this.#statementTimeoutMs / 4)));
      this.#watchdog.unref();
    }
  }

  async stop(): Promise<void> {
    if (this.#stopping.signal.aborted) return;
    // Taken first: a worker still opening lets go of itself when stopping is signalled.
    const worker = this.#worker;
    const serving = this.#upstream !== undefined;
    this.#stopping.abort();
    clearInterval(this.#watchdog);
    this.#problem = 'the embedded database is stopped';
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const socket of this.#waiting) socket.destroy();
    this.#waiting.clear();
    for (const link of this.#links) link.close();
    await closed;
    this.#worker = undefined;
    this.#upstream = undefined;
    if (!worker) return;
    // A worker that serves and is idle closes PGlite cleanly; one that is busy (perhaps
    // spinning for good) or still opening is terminated, which stops it wherever it is.
    if (serving && Atomics.load(this.#busySince, 0) === 0n) {
      const stopped = new Promise<void>((resolve) => {
        worker.on('message', (m: WorkerMessage) => { if (m.kind === 'stopped') resolve(); });
        worker.once('exit', () => resolve());
      });
      worker.postMessage({ kind: 'stop' } satisfies ParentMessage);
      await Promise.race([stopped, sleep(STOP_GRACE_MS, undefined, { ref: false })]);
    }
    await worker.terminate();
  }

  /** A connection to relay: a TCP socket on the SQL port, or connect()'s server end. */
  #accept(socket: Duplex): void {
    if ('setNoDelay' in socket) (socket as Socket).setNoDelay(true);
    socket.on('error', () => socket.destroy());
    if (this.#stopping.signal.aborted) socket.destroy();
    else if (this.#upstream !== undefined) this.#links.add(new Link(socket, this.#upstream, (l) => this.#links.delete(l)));
    else {
      socket.pause();
      this.#waiting.add(socket);
      socket.once('close', () => this.#waiting.delete(socket));
    }
  }

  /** Relays the connections that waited for the database, or drops them if it could not open. */
  #release(): void {
    for (const socket of this.#waiting) {
      if (this.#upstream === undefined) socket.destroy();
      else if (!socket.destroyed) {
        this.#links.add(new Link(socket, this.#upstream, (l) => this.#links.delete(l)));
        socket.resume();
      }
    }
    this.#waiting.clear();
  }

  /**
   * Creates the database (initdb) in a process of its own (embedded-init.ts), into a
   * directory beside the target that replaces it once complete: a creation cut short
   * leaves no half-made directory behind. Within openTimeoutMs, like opening.
   */
  async #create(): Promise<void> {
    const staging = `${this.#dataDir}.new-${process.pid}`;
    rmSync(staging, { recursive: true, force: true });
    const child = spawn(process.execPath, [INIT_PATH, staging], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => { stderr = (stderr + String(d)).slice(-2_000); });
    const onStop = () => child.kill('SIGKILL');
    this.#stopping.signal.addEventListener('abort', onStop);
    const timer = setTimeout(() => child.kill('SIGKILL'), this.#openTimeoutMs);
    try {
      const code = await new Promise<number | null>((resolve, reject) => { child.once('exit', resolve); child.once('error', reject); });
      if (this.#stopping.signal.aborted) throw new EmbeddedDatabaseError(`embedded database in ${this.#dataDir} was stopped while it was created`);
      if (code !== 0) {
        throw new EmbeddedDatabaseError(
          `embedded database in ${this.#dataDir} could not be created (exit code ${code}${stderr ? `: ${oneLine(stderr).slice(-300)}` : ''})`,
        );
      }
      rmSync(this.#dataDir, { recursive: true, force: true });
      renameSync(staging, this.#dataDir);
    } catch (error) {
      rmSync(staging, { recursive: true, force: true });
      throw error instanceof EmbeddedDatabaseError ? error : new EmbeddedDatabaseError(
        `embedded database in ${this.#dataDir} could not be created (${oneLine((error as Error)?.message ?? String(error))})`, { cause: error },
      );
    } finally {
      clearTimeout(timer);
      this.#stopping.signal.removeEventListener('abort', onStop);
    }
  }

  /** Starts a worker on the directory and resolves once it answers. */
  #open(): Promise<void> {
    Atomics.store(this.#busySince, 0, 0n);
    this.#upstream = undefined;
    const worker = new Worker(WORKER_URL, { workerData: { dataDir: this.#dataDir, busy: this.#busy } satisfies WorkerInput });
    this.#worker = worker;
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const settle = (error: Error | undefined, port?: number) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#stopping.signal.removeEventListener('abort', onStop);
        if (error) {
          if (this.#worker === worker) this.#worker = undefined;
          this.#release();
          // Gone before anyone opens the directory again (terminate stops spinning WebAssembly too).
          void worker.terminate().finally(() => reject(error));
          return;
        }
        this.#upstream = port;
        this.#problem = undefined;
        // From now on the worker ending by itself (a crash inside PGlite) is a fault to recover from.
        worker.once('exit', (code) => {
          if (this.#worker === worker) void this.#restart(`the embedded database stopped unexpectedly (exit code ${code})`);
        });
        this.#release();
        resolve();
      };
      const timer = setTimeout(() => settle(new EmbeddedDatabaseError(
        `embedded database in ${this.#dataDir} did not open within ${seconds(this.#openTimeoutMs)}: ${ADVICE}`,
      )), this.#openTimeoutMs);
      const onStop = () => settle(new EmbeddedDatabaseError(`embedded database in ${this.#dataDir} was stopped while opening`));
      this.#stopping.signal.addEventListener('abort', onStop);
      worker.on('message', (m: WorkerMessage) => {
        if (m.kind === 'ready') settle(undefined, m.port);
        else if (m.kind === 'failed') settle(new EmbeddedDatabaseError(
          `embedded database in ${this.#dataDir} could not be opened (${oneLine(m.message)}): ${ADVICE}`,
        ));
      });
      worker.on('error', (error) => {
        if (!settled) settle(new EmbeddedDatabaseError(
          `embedded database in ${this.#dataDir} could not be opened (${oneLine(error.message)}): ${ADVICE}`, { cause: error },
        ));
        else this.#logger?.error({ err: error, dataDir: this.#dataDir }, 'embedded database: its thread failed');
      });
      worker.once('exit', (code) => settle(new EmbeddedDatabaseError(
        `embedded database in ${this.#dataDir} stopped while opening (exit code ${code}): ${ADVICE}`,
      )));
    });
  }

  #watch(): void {
    if (this.#upstream === undefined || this.#stopping.signal.aborted) return;
    const since = Number(Atomics.load(this.#busySince, 0));
    if (since !== 0 && Date.now() - since > this.#statementTimeoutMs) {
      const timeout = seconds(this.#statementTimeoutMs);
      // The statement's client hears what PostgreSQL's own statement_timeout says.
      for (const link of this.#links) link.cancel(`the embedded database ran it for more than ${timeout} and was restarted to end it`);
      void this.#restart(`a statement ran longer than ${timeout}`);
    }
  }

  /** Ends the current worker wherever it is and opens the database again. */
  async #restart(why: string): Promise<void> {
    if (this.#stopping.signal.aborted || this.#upstream === undefined) return;
    this.#upstream = undefined;
    this.#restarts++;
    this.#problem = `the embedded database is restarting: ${why}`;
    this.#logger?.error({ dataDir: this.#dataDir, restarts: this.#restarts },
      `embedded database: ${why}; restarting it (if this repeats, ${this.#dataDir} may be damaged: move it aside or restore a backup)`);
    for (const link of this.#links) link.close();
    const worker = this.#worker;
    this.#worker = undefined;
    await worker?.terminate();
    for (let attempt = 1; !this.#stopping.signal.aborted; attempt++) {
      try {
        await this.#open();
        this.#logger?.info({ dataDir: this.#dataDir, restarts: this.#restarts }, 'embedded database restarted');
        return;
      } catch (error) {
        if (this.#stopping.signal.aborted) return;
        this.#problem = 'the embedded database cannot be opened again';
        this.#logger?.error({ dataDir: this.#dataDir, attempt }, `embedded database: ${(error as Error).message}; trying again`);
        await sleep(Math.min(60_000, 1_000 * 2 ** attempt), undefined, { signal: this.#stopping.signal }).catch(() => undefined);
      }
    }
  }
}

const SSL_REQUEST = 80877103;
const TURNED_AWAY = Buffer.from('Too many connections');
const GSSENC_REQUEST = 80877104;

/**
 * One client connection relayed to the worker's socket server. It follows the server's
 * message framing, so it knows whether the client waits for an answer and whether the
 * stream stands between two messages: only then can it answer the client itself.
 */
class Link {
  readonly #client: Duplex;
  readonly #port: number;
  readonly #onClose: (link: Link) => void;
  #upstream!: Socket;
  /** What the client sent before the server first answered: sent again if the server turned the connection away. */
  #unanswered: Buffer[] | undefined = [];
  #attempts = 0;
  /** The client sent something the server has not finished answering (no ReadyForQuery yet). */
  #awaiting = false;
  /** Bytes of the server's stream to pass unframed (the one-byte answer to an SSL or GSS request). */
  #raw = 0;
  #header = Buffer.alloc(0);
  #type = 0;
  /** Bytes left of the server's message being relayed. */
  #left = 0;
  #closed = false;

  constructor(client: Duplex, port: number, onClose: (link: Link) => void) {
    this.#client = client;
    this.#port = port;
    this.#onClose = onClose;
    let first = true;
    client.on('data', (chunk: Buffer) => {
      if (first && chunk.length >= 8 && chunk.readInt32BE(0) === 8) {
        const code = chunk.readInt32BE(4);
        if (code === SSL_REQUEST || code === GSSENC_REQUEST) this.#raw++;
      }
      first = false;
      this.#awaiting = true;
      this.#unanswered?.push(chunk);
      if (!this.#upstream.write(chunk)) client.pause();
    });
    client.on('drain', () => this.#upstream.resume());
    for (const event of ['error', 'close', 'end']) client.on(event, () => this.#end());
    this.#connect();
  }

  #connect(): void {
    const upstream = createConnection({ host: '127.0.0.1', port: this.#port });
    upstream.setNoDelay(true);
    this.#upstream = upstream;
    for (const chunk of this.#unanswered ?? []) upstream.write(chunk);
    upstream.on('drain', () => this.#client.resume());
    // PGlite's socket server serves one connection: it turns the next one away (closes it
    // unanswered, or says "Too many connections") while the pool's previous connection is
    // still closing there. Until the server has answered, such a refusal is tried again.
    const turnedAway = () => {
      if (upstream !== this.#upstream || this.#closed) return true;
      if (!this.#unanswered || this.#attempts++ >= 250) return false;
      upstream.removeAllListeners();
      upstream.on('error', () => undefined);
      upstream.destroy();
      setTimeout(() => { if (!this.#closed) this.#connect(); }, 20);
      return true;
    };
    upstream.on('data', (chunk: Buffer) => {
      if (this.#unanswered) {
        if (chunk.subarray(0, TURNED_AWAY.length).equals(TURNED_AWAY) && turnedAway()) return;
        this.#unanswered = undefined;
      }
      this.#follow(chunk);
      if (!this.#client.write(chunk)) upstream.pause();
    });
    for (const event of ['error', 'close', 'end']) upstream.on(event, () => { if (!turnedAway()) this.#end(); });
  }

  #end(): void {
    this.close();
    this.#onClose(this);
  }

  /** Answers a statement in flight with PostgreSQL's statement-timeout error, then closes. */
  cancel(detail: string): void {
    if (this.#closed) return;
    const atBoundary = this.#raw === 0 && this.#left === 0 && this.#header.length === 0;
    if (this.#awaiting && atBoundary) {
      this.#closed = true;
      this.#upstream.destroy();
      // Then the server's goodbye, in the same write: the driver marks the connection
      // unusable before its pool can hand it to the next statement.
      this.#client.end(Buffer.concat([
        errorResponse('ERROR', '57014', 'canceling statement due to statement timeout', detail),
        errorResponse('FATAL', '57P01', 'terminating connection: the embedded database is restarting', detail),
      ]));
      return;
    }
    this.close();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#upstream.destroy();
    this.#client.destroy();
  }

  #follow(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.#raw > 0) {
        this.#raw--;
        at++;
      } else if (this.#left > 0) {
        const n = Math.min(this.#left, chunk.length - at);
        this.#left -= n;
        at += n;
        if (this.#left === 0) this.#ended();
      } else if (this.#header.length === 0 && chunk.length - at >= 5) {
        // A message's type and length, whole in this chunk (the usual case).
        this.#type = chunk[at]!;
        this.#left = chunk.readInt32BE(at + 1) - 4;
        at += 5;
        if (this.#left === 0) this.#ended();
      } else {
        const n = Math.min(5 - this.#header.length, chunk.length - at);
        this.#header = Buffer.concat([this.#header, chunk.subarray(at, at + n)]);
        at += n;
        if (this.#header.length === 5) {
          this.#type = this.#header[0]!;
          this.#left = this.#header.readInt32BE(1) - 4;
          this.#header = Buffer.alloc(0);
          if (this.#left === 0) this.#ended();
        }
      }
    }
  }

  #ended(): void {
    if (this.#type === 0x5a /* Z: ReadyForQuery */) this.#awaiting = false;
  }
}

/** A PostgreSQL ErrorResponse message. */
function errorResponse(severity: 'ERROR' | 'FATAL', code: string, message: string, detail: string): Buffer {
  const field = (type: string, value: string) => Buffer.from(`${type}${value}\0`, 'utf8');
  const body = Buffer.concat([
    field('S', severity), field('V', severity), field('C', code), field('M', message), field('D', detail), Buffer.from([0]),
  ]);
  const head = Buffer.alloc(5);
  head.write('E', 0, 'latin1');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}
