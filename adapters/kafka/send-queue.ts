// The producer's send queue: bounded, and flushed one request at a time in chunks
// that stay under the broker's size limit.
//
// Bounded, because a broker that stalls under load would otherwise let appends pile
// up without limit (memory), and the pile would then go out as one request larger
// than the broker accepts (message.max.bytes), failing every caller in it. Full, it
// refuses at once with a retriable error the edge turns into 503 + Retry-After.
//
// Chunked, so each request's outcome is its own: a caller is resolved or rejected
// only by the requests that carried its records.
//
// Flushed after the current tick, not at the first push: the appends of one turn of the
// event loop (the tells of a batch's commands, the requests of one socket read) share a
// request. Sent at the first push, a lone append went alone and the rest of its tick waited
// for the next request; with the load spread over three nodes, each node's produce requests
// carried half as many records and cost about four times as many requests per command.

import { CommandLogFullError } from '../../runtime/errors.ts';

export interface SendQueueOptions<T> {
  /** Most records waiting or in flight; an append beyond it is refused. */
  readonly maxRecords: number;
  /** Budget of one request's records, from recordBytes (request overheads already taken off). */
  readonly maxChunkBytes: number;
  readonly sizeOf: (record: T) => number;
  /** Sends one chunk; resolves once the broker acknowledged all of it. */
  readonly send: (records: readonly T[]) => Promise<void>;
}

/** One appendMany: resolved when all its parts are acknowledged, rejected on the first that fails. */
interface Caller {
  parts: number;
  failed: boolean;
  resolve(): void;
  reject(error: unknown): void;
}

/** Records of one caller that fit in one chunk. */
interface Part<T> {
  readonly caller: Caller;
  readonly records: readonly T[];
  readonly bytes: number;
}

/**
 * Upper bound of one record's size in a v2 record batch: key and value, plus the
 * varints around them (length, attributes, timestamp and offset deltas, key and
 * value lengths, header count) at their widest.
 */
export function recordBytes(key: string, value: string | Buffer): number {
  return Buffer.byteLength(key) + Buffer.byteLength(value) + 32;
}

export class SendQueue<T> {
  readonly #o: SendQueueOptions<T>;
  #queue: Part<T>[] = [];
  /** Records queued or in flight: what the bound counts. */
  #pending = 0;
  #sending = false;
  #scheduled = false;

  constructor(options: SendQueueOptions<T>) {
    this.#o = options;
  }

  get pending(): number {
    return this.#pending;
  }

  push(records: readonly T[]): Promise<void> {
    if (records.length === 0) return Promise.resolve();
    // An append larger than the whole bound still goes when nothing else waits, or it never could.
    if (this.#pending > 0 && this.#pending + records.length > this.#o.maxRecords) {
      return Promise.reject(new CommandLogFullError(
        `the command log has ${this.#pending} records waiting for the broker ` +
        `(KAFKA_SEND_QUEUE_MAX is ${this.#o.maxRecords}); try again shortly`,
      ));
    }
    return new Promise<void>((resolve, reject) => {
      const caller: Caller = { parts: 0, failed: false, resolve, reject };
      for (const part of this.#split(caller, records)) this.#queue.push(part);
      this.#pending += records.length;
      this.#schedule();
    });
  }

  /** A flush after the current tick, unless one is due or a request is out (its loop takes what waits). */
  #schedule(): void {
    if (this.#sending || this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      if (!this.#sending) void this.#flush();
    });
  }

  /** A caller's records in parts that each fit a chunk (a record too large alone is a part of its own). */
  #split(caller: Caller, records: readonly T[]): Part<T>[] {
    const parts: Part<T>[] = [];
    let current: T[] = [];
    let bytes = 0;
    for (const record of records) {
      const size = this.#o.sizeOf(record);
      if (current.length > 0 && bytes + size > this.#o.maxChunkBytes) {
        parts.push({ caller, records: current, bytes });
        current = [];
        bytes = 0;
      }
      current.push(record);
      bytes += size;
    }
    parts.push({ caller, records: current, bytes });
    caller.parts = parts.length;
    return parts;
  }

  /** The parts at the head of the queue that fit one request together (always at least one). */
  #nextChunk(): Part<T>[] {
    let bytes = 0;
    let n = 0;
    while (n < this.#queue.length && (n === 0 || bytes + this.#queue[n]!.bytes <= this.#o.maxChunkBytes)) {
      bytes += this.#queue[n]!.bytes;
      n++;
    }
    return this.#queue.splice(0, n);
  }

  /** One request in flight at a time: the idempotent producer keeps per-partition order only so. */
  async #flush(): Promise<void> {
    this.#sending = true;
    while (this.#queue.length > 0) {
      const chunk = this.#nextChunk();
      try {
        await this.#o.send(chunk.flatMap((p) => p.records));
        for (const part of chunk) this.#acknowledged(part);
      } catch (error) {
        for (const part of chunk) this.#failed(part, error);
      }
    }
    this.#sending = false;
  }

  #acknowledged(part: Part<T>): void {
    this.#pending -= part.records.length;
    if (--part.caller.parts === 0 && !part.caller.failed) part.caller.resolve();
  }

  /** A failed caller's other parts are not sent: it was told the append failed, and appends again. */
  #failed(part: Part<T>, error: unknown): void {
    this.#pending -= part.records.length;
    if (part.caller.failed) return;
    part.caller.failed = true;
    part.caller.reject(error);
    const rest = this.#queue.filter((p) => p.caller === part.caller);
    this.#queue = this.#queue.filter((p) => p.caller !== part.caller);
    for (const p of rest) this.#pending -= p.records.length;
  }
}
