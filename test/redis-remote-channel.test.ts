// The remote channel on Redis: the asks, answers and outcomes of one tick to one node leave
// in one message, and each is still handled on its own (its answer to its own ask, its outcome
// to its own command); a lone wire still goes as itself, which a receiver also takes.

import test from 'ava';
import { Redis } from 'ioredis';
import { RedisRemoteChannel } from '../adapters/redis/remote-channel.ts';
import type { CommandResult } from '../runtime/ports.ts';
import { eventually } from './helpers/node-process.ts';

const url = process.env.REDIS_URL;

test('the wires of one tick to a node go in one message; each gets its own answer', async (t) => {
  if (!url) { t.fail('REDIS_URL is unset'); return; }
  const prefix = `rc${process.pid}${Date.now()}`;
  const owner = new RedisRemoteChannel({ url, nodeId: 'owner', prefix });
  const asker = new RedisRemoteChannel({ url, nodeId: 'asker', prefix });
  // A third client counts the messages each node's channel carries.
  const spy = new Redis(url);
  t.teardown(async () => { await owner.close(); await asker.close(); spy.disconnect(); });
  const messages = new Map<string, string[]>();
  spy.on('message', (channel: string, raw: string) => messages.set(channel, [...(messages.get(channel) ?? []), raw]));
  await spy.subscribe(`${prefix}:node:owner`, `${prefix}:node:asker`);
  const outcomes: [string, CommandResult][] = [];
  await owner.serve({ ask: async (to, query) => ({ entity: to.id, echo: query }), reply: () => undefined });
  await asker.serve({ ask: async () => undefined, reply: (id, result) => { outcomes.push([id, result]); } });

  const answers = await Promise.all([1, 2, 3].map((n) => asker.ask('owner', { kind: 'cell', id: `c${n}` }, { q: n }, 5_000)));
  t.deepEqual(answers, [1, 2, 3].map((n) => ({ entity: `c${n}`, echo: { q: n } })), 'each ask its own answer');
  await owner.reply('asker', 'cmd-1', { status: 'applied' });
  await owner.reply('asker', 'cmd-2', { status: 'rejected', reason: 'no' } as CommandResult);
  t.true(await eventually(async () => outcomes.length === 2, 10_000, 20));
  t.deepEqual(outcomes, [['cmd-1', { status: 'applied' }], ['cmd-2', { status: 'rejected', reason: 'no' }]]);
  await eventually(async () => (messages.get(`${prefix}:node:asker`)?.length ?? 0) >= 2, 5_000, 20);
  t.is(messages.get(`${prefix}:node:owner`)?.length, 1, 'the three asks of one tick: one message');
  t.is(messages.get(`${prefix}:node:asker`)?.length, 2, 'the three answers of one tick, then the two outcomes of another: one message each');

  // A lone wire goes as itself (not an array).
  await asker.ask('owner', { kind: 'cell', id: 'c9' }, { q: 9 }, 5_000);
  await eventually(async () => (messages.get(`${prefix}:node:owner`)?.length ?? 0) === 2, 5_000, 20);
  t.false(messages.get(`${prefix}:node:owner`)![1]!.startsWith('['));
});

test('WIRE_FORMS=previous: each wire a message of its own, as a node of the release before reads them', async (t) => {
  if (!url) { t.fail('REDIS_URL is unset'); return; }
  const prefix = `rp${process.pid}${Date.now()}`;
  const owner = new RedisRemoteChannel({ url, nodeId: 'owner', prefix, oneWirePerMessage: true });
  const asker = new RedisRemoteChannel({ url, nodeId: 'asker', prefix, oneWirePerMessage: true });
  const spy = new Redis(url);
  t.teardown(async () => { await owner.close(); await asker.close(); spy.disconnect(); });
  const messages: string[] = [];
  spy.on('message', (_channel: string, raw: string) => messages.push(raw));
  await spy.subscribe(`${prefix}:node:owner`, `${prefix}:node:asker`);
  await owner.serve({ ask: async (to) => to.id, reply: () => undefined });
  await asker.serve({ ask: async () => undefined, reply: () => undefined });
  const answers = await Promise.all([1, 2, 3].map((n) => asker.ask('owner', { kind: 'cell', id: `c${n}` }, {}, 5_000)));
  t.deepEqual(answers, ['c1', 'c2', 'c3']);
  t.true(await eventually(async () => messages.length === 6, 5_000, 20), `${messages.length} messages`);
  t.false(messages.some((m) => m.startsWith('[')), 'no message carries an array');
});
