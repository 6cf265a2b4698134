// The CommandLog port's conformance suite (runtime/ports.ts): the same cases against the
// embedded node's file-backed log and Kafka, registered per implementation by
// command-log.test.ts. Each case gets a place of its own (a directory, a topic and group);
// a "restart" is a second log opened over the same place after the first one stopped.
// Nothing waits for a duration: cases poll for what they expect, and "nothing else was
// delivered" is shown with a marker appended after it, which per-shard order delivers last.

import test from 'ava';
import type { CommandEnvelope, CommandLog, CommandLogHandlers, LogRecord, ShardAssignment, SoftMessage } from '../../runtime/ports.ts';
import { eventually } from '../helpers/node-process.ts';

export interface CommandLogPlace {
  /** A log over this place; opening another after the last one stopped is a restart. */
  open(): CommandLog;
  /** Removes what the place holds (files, topic), once its logs are stopped. */
  remove(): Promise<void>;
}

const WAIT_MS = 90_000;

interface Consumer {
  readonly records: LogRecord[];
  readonly soft: { shard: number; messages: readonly SoftMessage[] }[];
  readonly assignments: { assignment: ShardAssignment; revoked: readonly number[]; gained: readonly number[] }[];
  readonly handlers: CommandLogHandlers;
  ids(shard: number): string[];
}

/**
 * Keeps what it is given, and commits it. With `withhold`, commits per batch only the longest
 * run of records from its start whose command does not say `commit: false` (the rest stays
 * uncommitted, as a node that crashed would leave it).
 */
function consumer(log: CommandLog, withhold: boolean): Consumer {
  const records: LogRecord[] = [];
  const soft: Consumer['soft'] = [];
  const assignments: Consumer['assignments'] = [];
  return {
    records, soft, assignments,
    ids: (shard) => records.filter((r) => r.shard === shard).map((r) => r.command.id),
    handlers: {
      async onRecords(shard, batch) {
        records.push(...batch);
        let upTo: number | undefined;
        for (const r of batch) {
          if (withhold && (r.command.message as { commit?: boolean }).commit === false) break;
          upTo = r.offset;
        }
        if (upTo !== undefined) await log.commit(shard, upTo);
        return true;
      },
      async onAssignment(assignment, revoked, gained) {
        assignments.push({ assignment, revoked, gained });
      },
      async onSoft(shard, messages) {
        soft.push({ shard, messages });
      },
    },
  };
}

let sequence = 0;
const command = (id: string, message: Record<string, unknown> = {}): CommandEnvelope => ({
  id, to: { kind: 'counter', id: `e-${id}` }, message: { n: ++sequence, ...message }, at: Date.now(),
});

export interface CommandLogCapabilities {
  /** The log carries soft messages (appendSoft); the in-process one does not, its node owning every shard (ports.ts). */
  readonly soft: boolean;
}

export function commandLogConformance(name: string, makePlace: (shards: number) => Promise<CommandLogPlace>, can: CommandLogCapabilities): void {
  /** A place, and an opener that stops every log it opened when the case ends (also on failure). */
  const setUp = async (t: { teardown(f: () => Promise<void>): void }, shards: number) => {
    const place = await makePlace(shards);
    const opened: CommandLog[] = [];
    t.teardown(async () => {
      for (const log of opened) await log.stop().catch(() => undefined);
      await place.remove();
    });
    return {
      async start(withhold = false): Promise<{ log: CommandLog; c: Consumer }> {
        const log = place.open();
        opened.push(log);
        const c = consumer(log, withhold);
        await log.start(c.handlers);
        return { log, c };
      },
    };
  };

  test.serial(`${name}: a lone consumer is given every shard, and start() resolves once it has them`, async (t) => {
    const { start } = await setUp(t, 3);
    const { log, c } = await start();
    t.is(log.shards, 3);
    t.true(c.assignments.length >= 1, 'onAssignment ran before start() resolved');
    const last = c.assignments.at(-1)!;
    t.deepEqual([...last.assignment.owned].sort(), [0, 1, 2]);
    t.deepEqual([...c.assignments.flatMap((a) => a.gained)].sort(), [0, 1, 2]);
    const owners = new Set(last.assignment.placement.values());
    t.is(owners.size, 1, 'one node owns the shards');
    t.deepEqual([...last.assignment.nodes], [...owners]);
  });

  test.serial(`${name}: records reach the consumer once each, in append order per shard, with increasing offsets`, async (t) => {
    const { start } = await setUp(t, 4);
    const { log, c } = await start();
    const sent = Array.from({ length: 80 }, (_, i) => ({ shard: (i * 7) % 4, command: command(`o${i}`) }));
    await log.appendMany(sent.slice(0, 40));
    for (const e of sent.slice(40)) await log.append(e.shard, e.command);
    t.true(await eventually(async () => c.records.length >= sent.length, WAIT_MS), `received ${c.records.length}`);
    t.is(new Set(c.records.map((r) => r.command.id)).size, sent.length, 'every record once');
    t.is(c.records.length, sent.length, 'no record twice');
    for (let shard = 0; shard < 4; shard++) {
      t.deepEqual(c.ids(shard), sent.filter((e) => e.shard === shard).map((e) => e.command.id), `shard ${shard} in append order`);
      const offsets = c.records.filter((r) => r.shard === shard).map((r) => r.offset);
      t.true(offsets.every((o, i) => i === 0 || o > offsets[i - 1]!), `shard ${shard} offsets increase: ${offsets.join(',')}`);
    }
    const byId = new Map(sent.map((e) => [e.command.id, e]));
    t.true(c.records.every((r) => r.shard === byId.get(r.command.id)!.shard), 'each record on the shard it was appended to');
    t.deepEqual(c.records.find((r) => r.command.id === 'o3')?.command, sent[3]!.command, 'the command comes back as appended');
  });

  test.serial(`${name}: a record whose append resolved survives a stop at once, and is delivered after the restart`, async (t) => {
    const { start } = await setUp(t, 2);
    const first = await start(true);
    await first.log.append(1, command('durable-1', { commit: false }));
    await first.log.appendMany([{ shard: 0, command: command('durable-0', { commit: false }) }]);
    await first.log.stop(); // straight away: delivered or not, nothing was committed
    const second = await start();
    t.true(await eventually(async () => second.c.records.length >= 2, WAIT_MS), `received ${second.c.records.map((r) => r.command.id)}`);
    t.deepEqual(second.c.ids(0), ['durable-0']);
    t.deepEqual(second.c.ids(1), ['durable-1']);
  });

  test.serial(`${name}: after a restart delivery resumes after the last commit of each shard: what was committed is not delivered again, the rest is, at the same offsets`, async (t) => {
    const { start } = await setUp(t, 3);
    const first = await start(true);
    // Shard 0: three committed, then three not (a commit covers every record before it); shard 1: all committed; shard 2: none.
    const plan: [number, string, boolean][] = [
      [0, 'a1', true], [0, 'a2', true], [0, 'a3', true], [0, 'a4', false], [0, 'a5', false], [0, 'a6', false],
      [1, 'b1', true], [1, 'b2', true],
      [2, 'c1', false], [2, 'c2', false],
    ];
    for (const [shard, id, commit] of plan) await first.log.append(shard, command(id, { commit }));
    t.true(await eventually(async () => first.c.records.length >= plan.length, WAIT_MS));
    const offsetOf = new Map(first.c.records.map((r) => [r.command.id, r.offset]));
    await first.log.stop();

    const second = await start();
    for (const shard of [0, 1, 2]) await second.log.append(shard, command(`mark-${shard}`));
    t.true(await eventually(async () => [0, 1, 2].every((s) => second.c.ids(s).includes(`mark-${s}`)), WAIT_MS),
      `received ${second.c.records.map((r) => r.command.id)}`);
    t.deepEqual(second.c.ids(0), ['a4', 'a5', 'a6', 'mark-0'], 'shard 0 resumes at its first uncommitted record');
    t.deepEqual(second.c.ids(1), ['mark-1'], 'shard 1 was committed whole');
    t.deepEqual(second.c.ids(2), ['c1', 'c2', 'mark-2'], 'shard 2 was never committed');
    for (const r of second.c.records.filter((r) => offsetOf.has(r.command.id))) t.is(r.offset, offsetOf.get(r.command.id)!, `${r.command.id} keeps its offset`);
    await second.log.stop();

    // Everything was committed this time: the next restart delivers only what is new.
    const third = await start();
    for (const shard of [0, 1, 2]) await third.log.append(shard, command(`again-${shard}`));
    t.true(await eventually(async () => [0, 1, 2].every((s) => third.c.ids(s).includes(`again-${s}`)), WAIT_MS));
    t.deepEqual([0, 1, 2].map((s) => third.c.ids(s)), [['again-0'], ['again-1'], ['again-2']]);
  });

  test.serial(`${name}: drain() resolves once the batch being handled is done and committed`, async (t) => {
    const { start } = await setUp(t, 1);
    const place = { release: () => undefined as void, entered: false };
    const held = new Promise<void>((resolve) => { place.release = resolve; });
    const first = await start();
    const handle = first.c.handlers.onRecords;
    // The first batch is held until released, while drain() is waiting.
    first.c.handlers.onRecords = async (shard, batch) => { place.entered = true; await held; return handle(shard, batch); };
    await first.log.append(0, command('slow'));
    t.true(await eventually(async () => place.entered, WAIT_MS));
    t.truthy(first.log.drain, 'drain() is implemented');
    let drained = false;
    const draining = first.log.drain!().then(() => { drained = true; });
    await new Promise((r) => setImmediate(r));
    t.false(drained, 'drain() waits for the batch in flight');
    place.release();
    await draining;
    await first.log.stop();
    const second = await start();
    await second.log.append(0, command('after-drain'));
    t.true(await eventually(async () => second.c.ids(0).includes('after-drain'), WAIT_MS));
    t.deepEqual(second.c.ids(0), ['after-drain'], 'what the drained batch handled was committed');
  });

  if (can.soft) test.serial(`${name}: soft messages reach onSoft in order, many to a record, and a soft record is committed once the commands before it are`, async (t) => {
    const { start } = await setUp(t, 2);
    const first = await start();
    if (!first.log.appendSoft) return t.fail('this log has no appendSoft');
    const fixes: SoftMessage[] = [1, 2, 3].map((n) => ({ to: { kind: 'driver', id: `d${n}` }, message: { fix: n }, at: n }));
    await first.log.append(1, command('before-soft'));
    await first.log.appendSoft(1, fixes);
    t.true(await eventually(async () => first.c.soft.length >= 1 && first.c.ids(1).includes('before-soft'), WAIT_MS));
    t.deepEqual(first.c.soft, [{ shard: 1, messages: fixes }]);
    t.deepEqual(first.c.ids(1), ['before-soft'], 'a soft record is not handed to onRecords');
    await first.log.stop();
    const second = await start();
    await second.log.append(1, command('after-soft'));
    t.true(await eventually(async () => second.c.ids(1).includes('after-soft'), WAIT_MS));
    t.deepEqual(second.c.ids(1), ['after-soft']);
    t.deepEqual(second.c.soft, [], 'the soft record was committed');
  });
}
