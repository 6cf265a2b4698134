// The embedded node's command log, with Kafka's semantics in one process: one
// partition per shard, records ordered per partition with increasing offsets,
// consumption resumes from the last committed offset, commits are explicit.
//
// Durable when given a directory: each partition appends JSON lines to segment
// files (written synchronously before `append` resolves: the OS has the record
// even if this process is killed; it is not fsynced, so a power cut may lose the
// last records, as with Kafka's default flush policy). Committed offsets are
// written to a file by temp + rename. Segments whose records are all committed
// are deleted once that file says so, so the log does not grow without bound;
// offsets stay monotonic.
//
// A record is written whole or its append fails: a short write is continued, a failed
// one is cut off again, so the next record never lands on half of one. On open, a torn
// tail (a kill or a full disk mid-write: never acknowledged) is cut back to the last whole
// record, and said so. Offsets on disk must follow each other: a record missing between
// two (a damaged line, a lost file) stops that partition at the gap, loudly (onError with
// a CommandLogGapError, problem() for /ready, its appends refused), never skipped.

import {
  closeSync, existsSync, ftruncateSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, truncateSync, writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import type { CommandEnvelope, CommandLog, CommandLogHandlers, LogRecord } from '../../runtime/ports.ts';
import { backoff, sleep } from '../../runtime/backoff.ts';
import type { NodeId, ShardId } from '../../runtime/entity.ts';
import { LogUnavailableError } from '../../runtime/errors.ts';
import { readSegment, type SegmentEntry } from './segment.ts';

/** fs.writeSync's shape for a buffer: how many bytes it wrote, perhaps fewer than asked. */
export type WriteSync = (fd: number, buffer: Uint8Array, offset: number, length: number) => number;

/** Records of a partition are missing on disk between two offsets: the partition stops there. */
export class CommandLogGapError extends Error {
  override readonly name = 'CommandLogGapError';
  readonly code = 'command_log_gap';
  readonly shard: ShardId;
  /** The offset that should have come next, and the one that did. */
  readonly expected: number;
  readonly found: number;
  constructor(shard: ShardId, expected: number, found: number, file: string) {
    super(`command log: shard ${shard} stopped at offset ${expected}: the next record on disk is offset ${found} (${file}); ` +
      `records from ${expected} on are not delivered and commands for shard ${shard} are refused until the log is repaired`);
    this.shard = shard;
    this.expected = expected;
    this.found = found;
  }
}

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
  /** Writes to segment files (tests: a short or failing write); fs.writeSync otherwise. */
  readonly writeSync?: WriteSync;
  /**
   * Committed offsets are written at most this often (default 100 ms). Every write is a file
   * written and renamed on the event loop; once per tick it cost 6% of a core at 200 bookings/s.
   * Offsets written late only mean records redelivered after a crash, which dedupe absorbs.
   */
  readonly offsetsEveryMs?: number;
}

interface Segment {
  readonly base: number;
  readonly path: string;
  fd: number | undefined;
  count: number;
  /** Length of the whole records in the file: a failed write is cut back to it. */
  bytes: number;
  /** A failed write may have left part of a record after `bytes`: cut before the next one. */
  dirty: boolean;
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
  /** Set when records are missing on disk: nothing after the gap is delivered or appended. */
  gap?: CommandLogGapError;
  /** While loading: one past the highest offset on disk. */
  end: number;
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
      shard, base: 0, records: [], next: 0, committed: 0, delivering: false, segments: [], end: 0,
    }));
    if (options.dir) this.#load(options.dir);
  }

  async append(shard: ShardId, command: CommandEnvelope): Promise<void> {
    this.#refuseStopped([shard]);
    this.#appendOne(shard, command);
    this.#schedule(shard);
  }

  async appendMany(entries: readonly { shard: ShardId; command: CommandEnvelope }[]): Promise<void> {
    this.#refuseStopped(entries.map((e) => e.shard));
    try {
      for (const { shard, command } of entries) this.#appendOne(shard, command);
    } finally {
      // Those written before a failed one are in the log: they are delivered, not left until the next append.
      for (const shard of new Set(entries.map((e) => e.shard))) this.#schedule(shard);
    }
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
      // Coalesce the commits of a while into one write; losing it only means redelivery.
      setTimeout(() => {
        // A failed write (a full disk, a directory removed after stop) must not end the
        // process from a timer: the offsets stay as they were, and the commits are redelivered.
        if (!this.#offsetsDirty) return; // written by stop() meanwhile
        try { this.#writeOffsets(); } catch (error) { this.#o.onError?.(error, 'writing committed offsets'); }
      }, this.#o.offsetsEveryMs ?? 100);
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

  /** Partitions stopped at a gap, in words for /ready; undefined when there are none. */
  problem(): string | undefined {
    const gaps = this.#partitions.flatMap((p) => (p.gap ? [p.gap.message] : []));
    return gaps.length > 0 ? gaps.join('; ') : undefined;
  }

  /** Records held in memory, delivered or not, over every partition (committed ones are let go). */
  heldRecords(): number {
    return this.#partitions.reduce((n, p) => n + p.records.length, 0);
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

  /** Before anything is written: a batch is not half taken because one of its shards is stopped. */
  #refuseStopped(shards: readonly ShardId[]): void {
    for (const shard of shards) {
      if (this.#partition(shard).gap) {
        throw new LogUnavailableError(`the command log's shard ${shard} is stopped at a gap in its records; an operator must repair it`);
      }
    }
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
      if (await this.#handlers!.onRecords(p.shard, batch)) {
        p.next = from + batch.length;
        // The handler commits before it returns, while `next` was still short of the batch:
        // released only now are the records of a log that has no more (else they stayed until
        // 1,024 more were committed, every command's envelope in memory).
        this.#release(p);
      } else await sleep(250);
    } catch (error) {
      this.#o.onError?.(error, `delivery of shard ${p.shard} from offset ${from} failed; retrying`);
      await sleep(100);
    }
  }

  /** Drops committed records from memory. */
  #release(p: Partition): void {
    const drop = Math.min(p.committed, p.next) - p.base;
    if (drop >= 1024 || (drop > 0 && drop === p.records.length)) {
      p.records = p.records.slice(drop);
      p.base += drop;
    }
  }

  /**
   * Deletes the segment files whose records are all committed by the offsets file just written:
   * on disk, every record from the committed offset on is always there (what #load checks).
   */
  #deleteCommitted(p: Partition, committed: number): void {
    while (p.segments.length > 1 && p.segments[1]!.base <= committed) {
      const done = p.segments.shift()!;
      if (done.fd !== undefined) closeSync(done.fd);
      rmSync(done.path, { force: true });
    }
  }

  #write(p: Partition, offset: number, command: CommandEnvelope): void {
    let segment = p.segments.at(-1);
    if (!segment || segment.count >= (this.#o.segmentRecords ?? 10_000)) {
      if (segment?.fd !== undefined) { closeSync(segment.fd); segment.fd = undefined; }
      const path = join(this.#o.dir!, `p${p.shard}-${String(offset).padStart(12, '0')}.log`);
      segment = { base: offset, path, fd: undefined, count: 0, bytes: 0, dirty: false };
      p.segments.push(segment);
    }
    segment.fd ??= openSync(segment.path, 'a');
    const line = Buffer.from(`${JSON.stringify({ o: offset, c: command })}\n`);
    try {
      // Refused while the torn part of an earlier failed write cannot be cut: nothing is glued to it.
      if (segment.dirty) { ftruncateSync(segment.fd, segment.bytes); segment.dirty = false; }
      this.#writeWhole(segment.fd, line);
    } catch (error) {
      segment.dirty = true;
      try { ftruncateSync(segment.fd, segment.bytes); segment.dirty = false; } catch { /* cut before the next write */ }
      const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      this.#o.onError?.(error, `command log: writing shard ${p.shard} offset ${offset} to ${segment.path} failed; the append is refused`);
      throw new LogUnavailableError(`the command log could not write a record of shard ${p.shard} (${code})`, { cause: error });
    }
    segment.bytes += line.length;
    segment.count++;
  }

  /** A write may take fewer bytes than given (a full disk, a signal): the rest is written after them. */
  #writeWhole(fd: number, data: Uint8Array): void {
    const write = this.#o.writeSync ?? writeSync;
    for (let done = 0; done < data.length;) {
      const wrote = write(fd, data, done, data.length - done);
      if (!(wrote > 0)) throw new Error(`write took ${wrote} of ${data.length - done} bytes`);
      done += wrote;
    }
  }

  #writeOffsets(): void {
    this.#offsetsDirty = false;
    const dir = this.#o.dir!;
    const offsets = Object.fromEntries(this.#partitions.map((p) => [p.shard, p.committed]));
    const tmp = join(dir, 'offsets.json.tmp');
    writeFileSync(tmp, JSON.stringify({ shards: this.shards, offsets }));
    renameSync(tmp, join(dir, 'offsets.json'));
    for (const p of this.#partitions) this.#deleteCommitted(p, offsets[p.shard]!);
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
    const files = readdirSync(dir).filter((f) => /^p\d+-\d+\.log$/.test(f));
    const base = (file: string) => Number(/^p\d+-(\d+)\.log$/.exec(file)![1]);
    const beyond = files.find((f) => Number(/^p(\d+)-/.exec(f)![1]) >= this.shards);
    if (beyond) {
      throw new Error(`the command log in ${dir} has ${beyond}, for more shards than ${this.shards}; keep SHARDS or use a new DATA_DIR`);
    }
    for (const p of this.#partitions) {
      const mine = files.filter((f) => f.startsWith(`p${p.shard}-`)).sort((a, b) => base(a) - base(b));
      mine.forEach((file, i) => this.#loadSegment(p, file, base(file), i === mine.length - 1));
    }
    for (const p of this.#partitions) {
      if (p.records.length === 0) p.base = Math.max(p.committed, p.end, p.segments.at(-1)?.base ?? 0);
      p.next = p.committed;
      this.#release(p);
    }
  }

  /** Reads one segment file into its partition; a torn tail of the partition's last one is cut off. */
  #loadSegment(p: Partition, file: string, base: number, last: boolean): void {
    const path = join(this.#o.dir!, file);
    const read = readSegment(path);
    const segment: Segment = { base, path, fd: undefined, count: read.entries.length, bytes: read.bytes, dirty: false };
    p.segments.push(segment);
    const report = (what: string) => this.#o.onError?.(new Error(`${file}: ${what}`), `command log: shard ${p.shard}: ${file}: ${what}`);
    if (read.tornBytes > 0 && last) {
      // Never acknowledged: its append threw, or the process died before it returned.
      truncateSync(path, read.bytes);
      report(`ended in a record cut short (${read.tornBytes} bytes, never acknowledged); cut back to the last whole record`);
    } else if (read.tornBytes > 0) {
      report(`ends in ${read.tornBytes} bytes that are no record (a write cut short)`);
    }
    if (read.salvaged.length > 0) report(`line(s) ${read.salvaged.join(', ')} held a record cut short with a whole one after it; the whole one is kept`);
    if (read.unreadable.length > 0) report(`line(s) ${read.unreadable.join(', ')} hold no record`);
    for (const entry of read.entries) this.#take(p, entry, segment, file);
  }

  /** Keeps a record read back if it follows the one before; a gap stops the partition there. */
  #take(p: Partition, entry: SegmentEntry, segment: Segment, file: string): void {
    p.end = Math.max(p.end, entry.o + 1);
    if (p.gap || entry.o < p.committed) return;
    const expected = p.records.length > 0 ? p.base + p.records.length : p.committed;
    if (entry.o !== expected) {
      // Older versions deleted a committed segment before writing the offsets that commit it:
      // a partition's first file may then begin after the committed offset, with nothing lost.
      const deletedEarly = p.records.length === 0 && entry.o > expected && entry.o === segment.base && p.segments[0] === segment;
      if (!deletedEarly) {
        p.gap = new CommandLogGapError(p.shard, expected, entry.o, file);
        this.#o.onError?.(p.gap, p.gap.message);
        return;
      }
      const context = `command log: shard ${p.shard}: records ${expected}..${entry.o - 1} were deleted as committed`;
      this.#o.onError?.(new Error(`${file} begins at ${entry.o}`), context);
    }
    if (p.records.length === 0) p.base = entry.o;
    p.records.push(entry.c);
  }
}
