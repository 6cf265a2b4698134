// The embedded node's file command log (adapters/file/command-log.ts) against what a crash or
// a full disk leaves in its segment files: a torn last line, a record glued to a torn one by
// an older version, a write that takes fewer bytes than given or fails half-way, a record
// missing between two; and a node over such a log. The behaviour every command log shares is
// test/conformance/command-log.ts's.

import test, { type ExecutionContext } from 'ava';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommandLogGapError, InProcessCommandLog, type InProcessCommandLogOptions } from '../adapters/file/command-log.ts';
import { LogUnavailableError } from '../runtime/errors.ts';
import type { CommandEnvelope, LogRecord } from '../runtime/ports.ts';
import { eventually, startNodeProcess } from './helpers/node-process.ts';
import { freshDatabase } from './helpers/services.ts';

const cmd = (id: string): CommandEnvelope => ({ id, to: { kind: 'counter', id: 'x' }, message: { type: 'add', n: 1 }, at: 0 });
const line = (o: number, id: string) => `${JSON.stringify({ o, c: cmd(id) })}\n`;

interface Opened {
  readonly log: InProcessCommandLog;
  /** `offset:id` per shard, as delivered. */
  readonly seen: Map<number, string[]>;
  readonly reports: { error: unknown; context: string }[];
}

/** A directory of its own, and logs over it that are stopped when the test ends. */
function place(t: ExecutionContext) {
  const dir = mkdtempSync(join(tmpdir(), 'file-log-'));
  const logs: InProcessCommandLog[] = [];
  t.teardown(async () => {
    for (const log of logs) await log.stop().catch(() => undefined);
    await new Promise((r) => setImmediate(r)); // a commit's offsets are written on the next turn
    rmSync(dir, { recursive: true, force: true });
  });
  const open = (options: Partial<InProcessCommandLogOptions> = {}): Opened => {
    const reports: Opened['reports'] = [];
    const log = new InProcessCommandLog({ shards: 1, nodeId: 'n', dir, onError: (error, context) => reports.push({ error, context }), ...options });
    logs.push(log);
    return { log, seen: new Map(), reports };
  };
  /** Opened and consuming (committing nothing, as a node killed before it handled them). */
  const consume = async (options: Partial<InProcessCommandLogOptions> = {}): Promise<Opened> => {
    const opened = open(options);
    await opened.log.start({
      onRecords: async (shard, records: readonly LogRecord[]) => {
        const mine = opened.seen.get(shard) ?? [];
        opened.seen.set(shard, mine);
        mine.push(...records.map((r) => `${r.offset}:${r.command.id}`));
        return true;
      },
      onAssignment: async () => undefined,
    });
    return opened;
  };
  const segment = (shard = 0) => join(dir, readdirSync(dir).filter((f) => f.startsWith(`p${shard}-`)).sort().at(-1)!);
  return { dir, open, consume, segment };
}

/** Appends a marker and waits for it: per-shard order delivers everything before it first. */
async function deliveredUpTo(opened: Opened, shard = 0): Promise<string[]> {
  await opened.log.append(shard, cmd('marker'));
  await eventually(async () => (opened.seen.get(shard) ?? []).some((s) => s.endsWith(':marker')), 60_000);
  return opened.seen.get(shard) ?? [];
}

test('a torn last line is cut back on open and said so, and every record appended after it is delivered after the next restart', async (t) => {
  const { open, consume, segment } = place(t);
  const first = open();
  await first.log.append(0, cmd('a0'));
  await first.log.append(0, cmd('a1'));
  await first.log.stop();
  // The process dies while it writes record 2 (never acknowledged): half a line, no newline.
  appendFileSync(segment(), line(2, 'torn').slice(0, 40));

  const second = open();
  t.true(second.reports.some((r) => /cut short .* cut back to the last whole record/.test(r.context)), 'the cut is reported');
  t.is(readFileSync(segment(), 'utf8'), line(0, 'a0') + line(1, 'a1'), 'only whole records are left');
  for (const id of ['b2', 'b3', 'b4']) await second.log.append(0, cmd(id)); // acknowledged
  await second.log.stop(); // killed before handling them: nothing committed

  const third = await consume();
  t.deepEqual(await deliveredUpTo(third), ['0:a0', '1:a1', '2:b2', '3:b3', '4:b4', '5:marker']);
  t.deepEqual(third.reports, [], 'nothing to report: the log is whole');
});

test('a line where an older version glued a record to a torn one is read as the whole record, and the records after it too', async (t) => {
  const { dir, consume } = place(t);
  const torn = line(2, 'torn').slice(0, 40);
  writeFileSync(join(dir, 'p0-000000000000.log'), line(0, 'a0') + line(1, 'a1') + torn + line(2, 'b2') + line(3, 'b3') + line(4, 'b4'));
  const opened = await consume();
  t.deepEqual(await deliveredUpTo(opened), ['0:a0', '1:a1', '2:b2', '3:b3', '4:b4', '5:marker']);
  t.true(opened.reports.some((r) => /line\(s\) 3 held a record cut short with a whole one after it/.test(r.context)), 'the repair is reported');
});

test('a write that takes fewer bytes than given is continued: the append resolves with the whole record on disk', async (t) => {
  const { open, consume, segment } = place(t);
  let calls = 0;
  const few = open({ writeSync: (fd, buffer, offset, length) => { calls++; return writeSync(fd, buffer, offset, Math.min(length, 7)); } });
  for (const id of ['s0', 's1', 's2']) await few.log.append(0, cmd(id));
  t.true(calls > 3, 'each record took several writes');
  t.is(readFileSync(segment(), 'utf8'), line(0, 's0') + line(1, 's1') + line(2, 's2'));
  await few.log.stop();
  t.deepEqual(await deliveredUpTo(await consume()), ['0:s0', '1:s1', '2:s2', '3:marker']);
});

test('a write that fails half-way (a full disk) fails the append, and nothing is glued to its half record', async (t) => {
  const { open, consume, segment } = place(t);
  let full = false;
  const disk = open({
    writeSync: (fd, buffer, offset, length) => {
      if (!full) return writeSync(fd, buffer, offset, length);
      if (offset > 0) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      return writeSync(fd, buffer, offset, length >> 1); // half of it, then the disk is full
    },
  });
  await disk.log.append(0, cmd('w0'));
  full = true;
  const refused = await t.throwsAsync(disk.log.append(0, cmd('refused')), { instanceOf: LogUnavailableError });
  t.regex(refused!.message, /could not write a record of shard 0 \(ENOSPC\)/);
  t.true(disk.reports.some((r) => /writing shard 0 offset 1 .* failed; the append is refused/.test(r.context)));
  await t.throwsAsync(disk.log.appendMany([{ shard: 0, command: cmd('refused-too') }]), { instanceOf: LogUnavailableError });
  full = false;
  await disk.log.append(0, cmd('w1'));
  t.is(readFileSync(segment(), 'utf8'), line(0, 'w0') + line(1, 'w1'), 'the half records were cut off before the next write');
  await disk.log.stop();
  const after = await consume();
  t.deepEqual(await deliveredUpTo(after), ['0:w0', '1:w1', '2:marker']);
  t.deepEqual(after.reports, []);
});

test('a batch whose second write fails still delivers its first record, with no append after it', async (t) => {
  const { consume } = place(t);
  let writes = 0;
  const full = () => { throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }); };
  const opened = await consume({ writeSync: (fd, buffer, offset, length) => (++writes === 2 ? full() : writeSync(fd, buffer, offset, length)) });
  await t.throwsAsync(opened.log.appendMany([{ shard: 0, command: cmd('first') }, { shard: 0, command: cmd('second') }]), { instanceOf: LogUnavailableError });
  t.true(await eventually(async () => (opened.seen.get(0) ?? []).includes('0:first'), 60_000), 'the record written is delivered');
});

test('a write that takes nothing fails the append instead of looping', async (t) => {
  const { open } = place(t);
  const stuck = open({ writeSync: () => 0 });
  await t.throwsAsync(stuck.log.append(0, cmd('never')), { instanceOf: LogUnavailableError, message: /shard 0/ });
});

test('a record missing between two stops its partition loudly: delivered up to the gap, appends refused, problem() names shard and offsets', async (t) => {
  const { dir, consume } = place(t);
  // Shard 0: line 3 (offset 2) is damaged; shard 1 is whole.
  writeFileSync(join(dir, 'p0-000000000000.log'), line(0, 'a0') + line(1, 'a1') + 'not a record\n' + line(3, 'a3') + line(4, 'a4'));
  writeFileSync(join(dir, 'p1-000000000000.log'), line(0, 'b0') + line(1, 'b1'));
  const opened = await consume({ shards: 2 });
  const gap = opened.reports.find((r) => r.error instanceof CommandLogGapError);
  t.truthy(gap, 'the gap is reported as an error');
  t.regex(gap!.context, /shard 0 stopped at offset 2: the next record on disk is offset 3 \(p0-000000000000\.log\)/);
  t.regex(opened.log.problem() ?? '', /^command log: shard 0 stopped at offset 2: .*records from 2 on are not delivered/);
  t.true(await eventually(async () => (opened.seen.get(0) ?? []).length >= 2, 60_000));
  t.deepEqual(opened.seen.get(0), ['0:a0', '1:a1'], 'the records before the gap are delivered');
  t.is(opened.log.stats()[0]!.endOffset, 2, 'and nothing after it is held for delivery');
  await t.throwsAsync(opened.log.append(0, cmd('refused')), { instanceOf: LogUnavailableError, message: /shard 0 is stopped at a gap/ });
  await t.throwsAsync(opened.log.appendMany([{ shard: 1, command: cmd('b-first') }, { shard: 0, command: cmd('refused') }]),
    { instanceOf: LogUnavailableError });
  t.deepEqual(await deliveredUpTo(opened, 1), ['0:b0', '1:b1', '2:marker'], 'the other shard goes on; a refused batch wrote none of its records');
});

test('a lost segment file is a gap too', async (t) => {
  const { dir, consume } = place(t);
  writeFileSync(join(dir, 'p0-000000000000.log'), line(0, 'a0') + line(1, 'a1'));
  writeFileSync(join(dir, 'p0-000000000004.log'), line(4, 'a4'));
  const opened = await consume();
  t.regex(opened.log.problem() ?? '', /shard 0 stopped at offset 2: the next record on disk is offset 4 \(p0-000000000004\.log\)/);
});

test('a first segment file that begins after the committed offset (an older version deleted the one before it early) is no gap', async (t) => {
  const { dir, consume } = place(t);
  writeFileSync(join(dir, 'offsets.json'), JSON.stringify({ shards: 1, offsets: { 0: 2 } }));
  writeFileSync(join(dir, 'p0-000000000004.log'), line(4, 'a4') + line(5, 'a5'));
  const opened = await consume();
  t.is(opened.log.problem(), undefined);
  t.deepEqual(await deliveredUpTo(opened), ['4:a4', '5:a5', '6:marker']);
});

test('a node whose command log has a gap says so: an error line, /ready 503 naming shard and offsets, commands for the shard refused with 503', async (t) => {
  t.timeout(300_000);
  const db = await freshDatabase();
  t.teardown(() => db.drop());
  const dataDir = mkdtempSync(join(tmpdir(), 'file-log-node-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  mkdirSync(join(dataDir, 'log'));
  const add = (o: number, id: string) => `${JSON.stringify({ o, c: { id, to: { kind: 'counter', id: 'g' }, message: { type: 'add', n: 1 }, at: 0 } })}\n`;
  writeFileSync(join(dataDir, 'log', 'p0-000000000000.log'), add(0, 'g0') + add(1, 'g1') + add(3, 'g3'));
  const node = await startNodeProcess('test/fixtures/counter-node.ts', { MODE: 'embedded', DATABASE_URL: db.url, DATA_DIR: dataDir, SHARDS: '1' });
  t.teardown(() => node.kill('SIGKILL'));

  t.true(node.output.some((l) => l.includes('"level":"error"') && l.includes('shard 0 stopped at offset 2: the next record on disk is offset 3')),
    node.output.slice(-10).join('\n'));
  const ready = await fetch(`${node.url}/ready`);
  t.is(ready.status, 503);
  t.regex(((await ready.json()) as { error: { message: string } }).error.message, /command log: shard 0 stopped at offset 2/);
  t.true(await eventually(async () => ((await (await fetch(`${node.url}/counter/g`)).json()) as { total: number }).total === 2),
    'the records before the gap are applied');
  const refused = await fetch(`${node.url}/counter/g/add?n=1`, { method: 'POST' });
  t.is(refused.status, 503);
  t.is(((await refused.json()) as { error: { code: string } }).error.code, 'unavailable');
});

test('an operator gives up the records of a gap by committing past it in offsets.json: delivery goes on after the gap', async (t) => {
  const { dir, consume } = place(t);
  writeFileSync(join(dir, 'offsets.json'), JSON.stringify({ shards: 1, offsets: { 0: 3 } }));
  writeFileSync(join(dir, 'p0-000000000000.log'), line(0, 'a0') + line(1, 'a1') + 'not a record\n' + line(3, 'a3') + line(4, 'a4'));
  const opened = await consume();
  t.is(opened.log.problem(), undefined);
  t.deepEqual(await deliveredUpTo(opened), ['3:a3', '4:a4', '5:marker']);
});

test('records delivered and committed are let go from memory, not held until a thousand more are', async (t) => {
  const { open } = place(t);
  const { log } = open({ shards: 2 });
  await log.start({
    onRecords: async (shard, records: readonly LogRecord[]) => { await log.commit(shard, records.at(-1)!.offset); return true; },
    onAssignment: async () => undefined,
  });
  for (let i = 0; i < 10; i++) await log.append(i % 2, cmd(`c${i}`));
  t.true(await eventually(async () => log.stats().every((p) => p.lag === 0), 30_000), 'every record handled and committed');
  t.true(await eventually(async () => log.heldRecords() === 0, 30_000), `${log.heldRecords()} records still held`);
  t.deepEqual(log.stats().map((p) => p.endOffset), [5, 5], 'offsets go on from where they were');
  await log.append(0, cmd('after'));
  t.true(await eventually(async () => log.stats()[0]!.lag === 0 && log.heldRecords() === 0, 30_000));
  t.is(log.stats()[0]!.endOffset, 6);
});
