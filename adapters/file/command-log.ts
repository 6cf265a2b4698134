// The embedded node's command log, with Kafka's semantics in one process: one
// partition per shard, records ordered per partition with increasing offsets,
// consumption resumes from the last committed offset, commits are explicit.
//
// Durable when given a directory: each partition appends JSON lines to segment
// files (written synchronously before `append` resolves: the OS has the record
// even if this process is killed; it is not fsynced, so a power cut may lose the
// last records, as with Kafka's default flush policy). Committed offsets are
// written to a file by temp + rename. Segments whose records are all committed
// are deleted, so the log does not grow without bound; offsets stay monotonic.

import {
  closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync, writeSync,
} from 'node:fs';
import { join } from 'node:path';
import type { CommandEnvelope, CommandLog, CommandLogHandlers, LogRecord } from '../../runtime/ports.ts';
import { backoff, sleep } from '../../runtime/backoff.ts';
import type { NodeId, ShardId } from '../../runtime/entity.ts';

export interface InProcessCommandLogOptions {
  readonly shards: number;
  readonly nodeId: NodeId;
  /** Directory for segment and offset files; memory-only without it. */
  readonly dir?: string;
  /** Records per delivered batch. */
  readonly batchSize?: number;
  /** Records per segment file before a new one is started. */
  readonly segmentRecords?: number;
  readonly onError?: (error: unknown, context: string) => void;
}

interface Segment {
  readonly base: number;
  readonly path: string;
  fd: number | undefined;
  count: number;
}

interface Partition {
  readonly shard: ShardId;
  /** Offset of records[0]. */
  base: number;
  records: CommandEnvelope[];
  /** Next offset to deliver. */
  next: number;
  /** Next offset not yet committed (Kafka's committed offset). */
  committed: number;
  delivering: boolean;
  segments: Segment[];
}

export interface PartitionStats {
  readonly shard: ShardId;
  readonly endOffset: number;
  readonly committed: number;
  readonly lag: number;
}

export class InProcessCommandLog implements CommandLog {
  readonly shards: number;
  readonly #o: InProcessCommandLogOptions;
  readonly #partitions: Partition[];
  #handlers: CommandLogHandlers | undefined;
  #running = false;
  #stopped = false;
  #inFlight = new Set<Promise<void>>();
  #offsetsDirty = false;

  constructor(options: InProcessCommandLogOptions) {
    this.#o = options;
    this.shards = options.shards;
    this.#partitions = Array.from({ length: options.shards }, (_, shard) => ({
      shard, base: 0, records: [], next: 0, committed: 0, delivering: false, segments: [],
    }));
    if (options.dir) this.#load(options.dir);
  }

  async append(shard: ShardId, command: CommandEnvelope): Promise<void> {
    this.#appendOne(shard, command);
    this.#schedule(shard);
  }

  async appendMany(entries: readonly { shard: ShardId; command: CommandEnvelope }[]): Promise<void> {
    for (const { shard, command } of entries) this.#appendOne(shard, command);
    for (const shard of new Set(entries.map((e) => e.shard))) this.#schedule(shard);
  }

  /** Resolves after the first attempt at setting the shards up; a failed one is retried in the background (ports.ts). */
  async start(handlers: CommandLogHandlers): Promise<void> {
    this.#handlers = handlers;
    if (await this.#setUp(1)) return;
    void (async () => {
      let attempt = 1;
      for (const delay of backoff(100, 5_000)) {
        await sleep(delay);
        if (this.#stopped || await this.#setUp(++attempt)) return;
      }
    })();
  }

  async #setUp(attempt: number): Promise<boolean> {
    const all = this.#partitions.map((p) => p.shard);
    try {
      await this.#handlers!.onAssignment(
        { owned: all, placement: new Map(all.map((s) => [s, this.#o.nodeId])), nodes: [this.#o.nodeId] },
        [],
        all,
      );
    } catch (error) {
      this.#o.onError?.(error, `setting up the shards failed (attempt ${attempt}); retrying`);
      return false;
    }
    if (this.#stopped) return true;
    this.#running = true;
    for (const p of this.#partitions) this.#schedule(p.shard);
    return true;
  }

  async commit(shard: ShardId, offset: number): Promise<void> {
    const p = this.#partition(shard);
    if (offset + 1 <= p.committed) return;
    p.committed = offset + 1;
    this.#release(p);
    if (this.#o.dir && !this.#offsetsDirty) {
      this.#offsetsDirty = true;
      // Coalesce commits of one tick into one write; losing it only means redelivery.
      setImmediate(() => {
        // A failed write (a full disk, a directory removed after stop) must not end the
        // process from a timer: the offsets stay as they were, and the commits are redelivered.
        try { this.#writeOffsets(); } catch (error) { this.#o.onError?.(error, 'writing committed offsets'); }
      });
    }
  }

  /** Stops delivering and waits for the deliveries in flight (they commit as they finish). */
  async drain(): Promise<void> {
    this.#running = false;
    this.#stopped = true;
    // Bounded, like a consumer's session: what is not done in time is redelivered after a restart.
    const until = Date.now() + 15_000;
    while (this.#inFlight.size > 0 && Date.now() < until) {
      await Promise.race([Promise.allSettled([...this.#inFlight]), new Promise((r) => setTimeout(r, 500))]);
    }
    if (this.#inFlight.size > 0) {
      this.#o.onError?.(new Error('stop timed out'), `${this.#inFlight.size} shard(s) still delivering at stop; they will be redelivered`);
    }
  }

  async stop(): Promise<void> {
    if (!this.#stopped) await this.drain();
    if (this.#o.dir) this.#writeOffsets();
    for (const p of this.#partitions) for (const s of p.segments) if (s.fd !== undefined) { closeSync(s.fd); s.fd = undefined; }
  }

  stats(): PartitionStats[] {
    return this.#partitions.map((p) => {
      const end = p.base + p.records.length;
      return { shard: p.shard, endOffset: end, committed: p.committed, lag: end - p.committed };
    });
  }

  #partition(shard: ShardId): Partition {
    const p = this.#partitions[shard];
    if (!p) throw new RangeError(`shard ${shard} is outside 0..${this.shards - 1}`);
    return p;
  }

  #appendOne(shard: ShardId, command: CommandEnvelope): void {
    const p = this.#partition(shard);
    const offset = p.base + p.records.length;
    if (this.#o.dir) this.#write(p, offset, command);
    p.records.push(command);
  }

  #schedule(shard: ShardId): void {
    const p = this.#partition(shard);
    if (!this.#running || p.delivering || p.next >= p.base + p.records.length) return;
    p.delivering = true;
    const work = this.#deliver(p).finally(() => {
      p.delivering = false;
      this.#inFlight.delete(work);
      this.#schedule(shard);
    });
    this.#inFlight.add(work);
  }

  /** One batch at a time per partition; partitions deliver concurrently. */
  async #deliver(p: Partition): Promise<void> {
    const size = this.#o.batchSize ?? 256;
    const from = Math.max(p.next, p.base);
    const batch: LogRecord[] = p.records.slice(from - p.base, from - p.base + size)
      .map((command, i) => ({ shard: p.shard, offset: from + i, command }));
    if (batch.length === 0) return;
    try {
      // Left unhandled (the shard is not served now): delivered again, from the same record, a little later.
      if (await this.#handlers!.onRecords(p.shard, batch)) p.next = from + batch.length;
      else await sleep(250);
    } catch (error) {
      this.#o.onError?.(error, `delivery of shard ${p.shard} from offset ${from} failed; retrying`);
      await sleep(100);
    }
  }

  /** Drops committed records from memory and deletes fully committed segment files. */
  #release(p: Partition): void {
    const drop = Math.min(p.committed, p.next) - p.base;
    if (drop >= 1024 || (drop > 0 && drop === p.records.length)) {
      p.records = p.records.slice(drop);
      p.base += drop;
    }
    while (p.segments.length > 1 && p.segments[1]!.base <= p.committed) {
      const done = p.segments.shift()!;
      if (done.fd !== undefined) closeSync(done.fd);
      rmSync(done.path, { force: true });
    }
  }

  #write(p: Partition, offset: number, command: CommandEnvelope): void {
    let segment = p.segments.at(-1);
    if (!segment || segment.count >= (this.#o.segmentRecords ?? 10_000)) {
      if (segment?.fd !== undefined) { closeSync(segment.fd); segment.fd = undefined; }
      segment = { base: offset, path: join(this.#o.dir!, `p${p.shard}-${String(offset).padStart(12, '0')}.log`), fd: undefined, count: 0 };
      p.segments.push(segment);
    }
    segment.fd ??= openSync(segment.path, 'a');
    writeSync(segment.fd, `${JSON.stringify({ o: offset, c: command })}\n`);
    segment.count++;
  }

  #writeOffsets(): void {
    this.#offsetsDirty = false;
    const dir = this.#o.dir!;
    const offsets = Object.fromEntries(this.#partitions.map((p) => [p.shard, p.committed]));
    const tmp = join(dir, 'offsets.json.tmp');
    writeFileSync(tmp, JSON.stringify({ shards: this.shards, offsets }));
    renameSync(tmp, join(dir, 'offsets.json'));
  }

  #load(dir: string): void {
    mkdirSync(dir, { recursive: true });
    const offsetsFile = join(dir, 'offsets.json');
    if (existsSync(offsetsFile)) {
      const saved = JSON.parse(readFileSync(offsetsFile, 'utf8')) as { shards: number; offsets: Record<string, number> };
      if (saved.shards !== this.shards) {
        throw new Error(
          `the command log in ${dir} was written with ${saved.shards} shards, not ${this.shards}; keep SHARDS or use a new DATA_DIR`,
        );
      }
      for (const p of this.#partitions) p.committed = saved.offsets[p.shard] ?? 0;
    }
    const files = readdirSync(dir).filter((f) => /^p\d+-\d+\.log$/.test(f)).sort();
    for (const file of files) {
      const [, shardText, baseText] = /^p(\d+)-(\d+)\.log$/.exec(file)!;
      const p = this.#partition(Number(shardText));
      const segment: Segment = { base: Number(baseText), path: join(dir, file), fd: undefined, count: 0 };
      p.segments.push(segment);
      for (const line of readFileSync(segment.path, 'utf8').split('\n')) {
        if (!line) continue;
        let entry: { o: number; c: CommandEnvelope };
        try { entry = JSON.parse(line); } catch { continue; } // a line cut short by a crash
        segment.count++;
        if (entry.o < p.committed) continue;
        if (p.records.length === 0) p.base = entry.o;
        if (entry.o === p.base + p.records.length) p.records.push(entry.c);
      }
    }
    for (const p of this.#partitions) {
      p.segments.sort((a, b) => a.base - b.base);
      if (p.records.length === 0) {
        p.base = Math.max(p.committed, p.segments.length ? p.segments.at(-1)!.base + p.segments.at(-1)!.count : 0);
      }
      p.next = p.committed;
      this.#release(p);
    }
  }
}
