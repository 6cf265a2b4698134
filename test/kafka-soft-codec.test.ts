// The compact form of a soft record (adapters/kafka/soft-codec.ts): it must decode to exactly
// what the JSON form decodes to, fall back to JSON for anything JSON itself would change, be
// told apart from a JSON record by its first bytes, and refuse a damaged record as an error
// (which the log dead-letters) rather than hand on something else.

import test from 'ava';
import { CompactDecodeError, decodeCompact, encodeCompact, isCompact } from '../adapters/kafka/soft-codec.ts';
import type { SoftMessage } from '../runtime/ports.ts';

const NOW = 1_796_687_026_822;

function fleet(n: number): SoftMessage[] {
  const out: SoftMessage[] = [];
  for (let i = 0; i < n; i++) {
    const lat = 40.6 + (i * 0.000_731_3) % 0.3;
    const lng = -74.1 + (i * 0.000_917_7) % 0.3;
    out.push(i % 2 === 0
      ? { to: { kind: 'driver', id: `fx${10_000 + i}` }, message: { type: 'location', fix: { lat, lng, at: NOW + i } }, at: NOW + i }
      : {
        to: { kind: 'cell', id: '872a10448ffffff' },
        message: {
          type: 'driver.upsert',
          driver: {
            driverId: `fx${i}`, lat, lng, status: 'available', vehicleType: 'economy', rating: 4.75, acceptanceRate: 1,
            lastTripEndedAt: 0, maintenance: [], seenAt: NOW,
          },
        },
        at: NOW,
      });
  }
  return out;
}

/** What a node reading the JSON form gets for these messages. */
const viaJson = (messages: readonly SoftMessage[]) => (JSON.parse(JSON.stringify({ soft: messages })) as { soft: SoftMessage[] }).soft;

test('fixes and cell copies decode to what their JSON form decodes to, in a third of its bytes or less', (t) => {
  const messages = fleet(200);
  const compact = encodeCompact(messages)!;
  t.truthy(compact);
  t.true(isCompact(compact));
  t.deepEqual(decodeCompact(compact), viaJson(messages));
  const json = Buffer.byteLength(JSON.stringify({ soft: messages }));
  t.true(compact.length * 3 <= json, `${compact.length} bytes compact against ${json} as JSON`);
});

test('every kind of JSON value decodes as JSON.parse gives it, keys in their order, and what JSON leaves out is left out', (t) => {
  const odd: Record<string, unknown> = {
    a: null, b: true, c: false, zero: 0, negZero: -0, small: -7, big: Number.MAX_SAFE_INTEGER, tooBig: 2 ** 60, minus: -(2 ** 53) + 1,
    half: 0.5, tiny: 5e-324, huge: 1.7976931348623157e308, neg: -123.456,
    empty: '', text: 'naïve — 東京 🚕', nested: [[], [1, [2, [3]]], {}, { x: { y: { z: 'deep' } } }],
    holes: [undefined, () => 1, Symbol('s'), 1], gone: undefined, fn: () => 2,
  };
  const own = JSON.parse('{"__proto__": {"polluted": true}, "safe": 1}') as Record<string, unknown>;
  const messages: SoftMessage[] = [
    { to: { kind: 'k', id: '1' }, message: odd, at: 1 },
    { to: { kind: 'k', id: '2' }, message: { ...odd, text: 'again', reordered: 1 }, at: 2 },
    { to: { kind: 'k', id: '3' }, message: own, at: 3 },
    { to: { kind: 'k', id: '4' }, message: Object.assign(Object.create(null) as object, { bare: 'null prototype' }), at: 4 },
  ];
  const decoded = decodeCompact(encodeCompact(messages)!);
  t.deepEqual(decoded, viaJson(messages));
  t.deepEqual(decoded.map((m) => Object.keys(m.message as object)), viaJson(messages).map((m) => Object.keys(m.message as object)));
  t.true(Object.is((decoded[0]!.message as { negZero: number }).negZero, 0), '-0 reads as 0, as JSON gives it');
  const proto = decoded[2]!.message as Record<string, unknown>;
  t.true(Object.hasOwn(proto, '__proto__'), '__proto__ is an own key, as JSON.parse makes it');
  t.is(Object.getPrototypeOf(proto), Object.prototype, 'and never the object\'s prototype');
  t.is(({} as Record<string, unknown>).polluted, undefined);
});

test('a message only JSON\'s own rules say how to write is not encoded compactly: the record goes as JSON', (t) => {
  const one = (message: unknown): SoftMessage[] => [...fleet(3), { to: { kind: 'k', id: 'x' }, message, at: 1 }];
  class Fix { lat = 1; }
  for (const message of [{ at: new Date(0) }, { n: Number.NaN }, { n: Number.POSITIVE_INFINITY }, { n: 1n }, new Fix(), { toJSON: () => 'x' }, new Map()]) {
    t.is(encodeCompact(one(message)), undefined, `${String((message as object).constructor?.name)} ${JSON.stringify(message, (_k, v: unknown) => (typeof v === 'bigint' ? 'bigint' : v))}`);
  }
  t.truthy(encodeCompact(fleet(3)), 'the same record without it is encoded');
  t.is(encodeCompact(one({ id: 'half \ud83d of a pair' })), undefined, 'a lone surrogate, which UTF-8 cannot carry');
  t.deepEqual(decodeCompact(encodeCompact(one({ id: 'a whole pair 🚕' }))!), viaJson(one({ id: 'a whole pair 🚕' })));
});

test.serial('with an enumerable property on Object.prototype (which JSON leaves out), records go as JSON', (t) => {
  const proto = Object.prototype as Record<string, unknown>;
  proto.polluted = 1;
  try {
    t.is(encodeCompact(fleet(2)), undefined);
  } finally {
    delete proto.polluted;
  }
  t.truthy(encodeCompact(fleet(2)));
});

test('records are encoded independently: one after a larger one decodes alone (the scratch buffer is not shared with a record)', (t) => {
  const large = encodeCompact(fleet(5_000))!;
  const small = encodeCompact(fleet(2))!;
  t.deepEqual(decodeCompact(small), viaJson(fleet(2)));
  t.deepEqual(decodeCompact(large), viaJson(fleet(5_000)), 'the first record is untouched by the second');
});

test('a JSON record is not taken for a compact one, and a damaged compact record is refused with CompactDecodeError', (t) => {
  t.false(isCompact(Buffer.from(JSON.stringify({ soft: fleet(2) }))));
  t.false(isCompact(Buffer.alloc(0)));
  const good = encodeCompact(fleet(6))!;
  for (let cut = 2; cut < good.length; cut++) {
    t.throws(() => decodeCompact(good.subarray(0, cut)), { instanceOf: CompactDecodeError }, `cut at ${cut} of ${good.length}`);
  }
  t.throws(() => decodeCompact(Buffer.concat([good, Buffer.from([0])])), { instanceOf: CompactDecodeError }, 'bytes after the last message');
  t.throws(() => decodeCompact(Buffer.from([0x00, 0x01, 0x01, 0x07, 0x05])), { instanceOf: CompactDecodeError }, 'a string named before it is defined');
  t.throws(() => decodeCompact(Buffer.from([0x00, 0x01, 0x01, 0x0a, 0x00])), { instanceOf: CompactDecodeError }, 'a shape named before it is defined');
  t.throws(() => decodeCompact(Buffer.from([0x00, 0x01, 0x01, 0x63])), { instanceOf: CompactDecodeError }, 'an unknown tag');
  t.throws(() => decodeCompact(Buffer.from([0x00, 0x01, 0xff, 0xff, 0xff, 0xff, 0x0f])), { instanceOf: CompactDecodeError }, 'a count beyond the bytes');
  t.throws(() => decodeCompact(Buffer.from([0x00, 0x01, 0x01, 0x09, 0x01, 0x04, 0x01, 0x00])), { instanceOf: CompactDecodeError }, 'a key that is not a string');
});
