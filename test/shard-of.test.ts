import test from 'ava';
import { execFileSync } from 'node:child_process';
import { entityKey, hash64, hash64Utf8, jumpHash, placementKey, shardOf } from '../runtime/entity.ts';
import { latLngToCell, cellToParent } from 'h3-js';

const placement = { shards: 32, placementRes: 4 };

test('shardOf spreads 100k keys within a few percent of even', (t) => {
  const counts = new Array<number>(placement.shards).fill(0);
  for (let i = 0; i < 100_000; i++) counts[shardOf({ kind: 'driver', id: `d-${i}` }, placement)]!++;
  const even = 100_000 / placement.shards;
  const worst = Math.max(...counts.map((c) => Math.abs(c - even) / even));
  t.log(`worst shard deviates ${(worst * 100).toFixed(2)}% from even`);
  t.true(worst < 0.05, `worst deviation ${worst}`);
});

test('shardOf is stable across processes', (t) => {
  const ids = ['d-1', 'booking-42', 'x'.repeat(100), 'ünïcode'];
  const here = ids.map((id) => shardOf({ kind: 'driver', id }, placement));
  const script = `import { shardOf } from './runtime/entity.ts';
    console.log(JSON.stringify(${JSON.stringify(ids)}.map((id) => shardOf({ kind: 'driver', id }, ${JSON.stringify(placement)}))));`;
  const there = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }));
  t.deepEqual(there, here);
  // Pinned values: changing the hash would move every entity of a running cluster.
  t.is(hash64('a').toString(16), 'af63dc4c8601ec8c', 'FNV-1a 64 reference vector');
  t.is(hash64('').toString(16), 'cbf29ce484222325', 'FNV-1a 64 offset basis');
  t.deepEqual(here, [2, 3, 9, 16]);
  t.is(jumpHash(0n, 1), 0);
});

test('jump hash moves only about 1/n of keys when a bucket is added', (t) => {
  let moved = 0;
  const n = 20_000;
  for (let i = 0; i < n; i++) {
    const h = hash64(`k${i}`);
    const a = jumpHash(h, 10);
    const b = jumpHash(h, 11);
    if (a !== b) { moved++; t.is(b, 10, 'a moved key only ever moves to the new bucket'); }
  }
  t.true(Math.abs(moved / n - 1 / 11) < 0.01, `moved ${moved / n}`);
});

test('cells are placed by their coarser parent, so neighbours share a shard', (t) => {
  const cell = latLngToCell(52.52, 13.405, 7);
  const sibling = latLngToCell(52.521, 13.406, 7);
  t.is(placementKey({ kind: 'cell', id: cell }, 4), `cell:${cellToParent(cell, 4)}`);
  if (cellToParent(cell, 4) === cellToParent(sibling, 4)) {
    t.is(shardOf({ kind: 'cell', id: cell }, placement), shardOf({ kind: 'cell', id: sibling }, placement));
  }
  t.is(placementKey({ kind: 'driver', id: cell }, 4), entityKey({ kind: 'driver', id: cell }));
});

test('an area (batched dispatch) shares the shard of the cells under it; one coarser than the placement is placed by its own id', (t) => {
  const cell = latLngToCell(52.52, 13.405, 7);
  const area = cellToParent(cell, 5);
  t.is(placementKey({ kind: 'area', id: area }, 4), `cell:${cellToParent(cell, 4)}`);
  t.is(shardOf({ kind: 'area', id: area }, placement), shardOf({ kind: 'cell', id: cell }, placement));
  const wide = cellToParent(cell, 3);
  t.is(placementKey({ kind: 'area', id: wide }, 4), entityKey({ kind: 'area', id: wide }));
});

test('the fast 64-bit FNV-1a equals the reference over UTF-8 bytes, for ASCII and other text', (t) => {
  let seed = 7;
  const next = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const texts = ['', 'a', 'driver:d1', 'cell:872a1072cffffff', 'booking:Zürich-1', '司机:7', 'emoji:🚕'];
  for (let i = 0; i < 5_000; i++) {
    const length = Math.floor(next() * 40);
    texts.push(Array.from({ length }, () => String.fromCharCode(Math.floor(next() * (i % 5 === 0 ? 0x3000 : 0x80)))).join(''));
  }
  const wrong = texts.filter((text) => hash64(text) !== hash64Utf8(text));
  t.deepEqual(wrong, []);
  // Pinned: a changed hash would move every entity to another shard (and its journal rows with it).
  t.is(hash64('driver:d1'), 0xa4eb073357737130n);
});

/** Jump hash as published (Lamping & Veach), in BigInt: what the 32-bit halves must equal for every key. */
function jumpReference(key: bigint, buckets: number): number {
  const mask = 0xffffffffffffffffn;
  let k = key & mask;
  let b = -1;
  let j = 0;
  while (j < buckets) {
    b = j;
    k = (k * 2862933555777941757n + 1n) & mask;
    j = Math.floor(((b + 1) * 2 ** 31) / (Number(k >> 33n) + 1));
  }
  return b;
}

test('jump hash in 32-bit halves equals the BigInt reference for every key tried, and shardOf the reference composition', (t) => {
  let seed = 11;
  const next32 = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0);
  const keys = [0n, 1n, 0xffffffffn, 0x100000000n, 0xffffffffffffffffn, 0x8000000000000000n, 0x7fffffffffffffffn];
  for (let i = 0; i < 20_000; i++) keys.push((BigInt(next32()) << 32n) | BigInt(next32()));
  // Keys whose first step's low half is 2^32 - 1 before the + 1: the carry into the high half,
  // which random keys reach once in 2^32. lo = -(multiplier's low half)^-1 mod 2^32.
  const inverse = (a: bigint) => { let x = 1n; for (let i = 0; i < 5; i++) x = (x * (2n - a * x)) & 0xffffffffn; return x; };
  const wraps = (0x100000000n - inverse(0x87b0b0fdn)) & 0xffffffffn;
  t.is((wraps * 0x87b0b0fdn) & 0xffffffffn, 0xffffffffn);
  for (let i = 0; i < 100; i++) keys.push((BigInt(next32()) << 32n) | wraps);
  const wrong: string[] = [];
  for (const key of keys) {
    for (const buckets of [1, 2, 7, 32, 64, 1000, 4096, 2 ** 31 - 1]) {
      if (jumpHash(key, buckets) !== jumpReference(key, buckets)) wrong.push(`${key.toString(16)} in ${buckets}`);
    }
  }
  t.deepEqual(wrong, []);
  const refs = [
    ...Array.from({ length: 5_000 }, (_, i) => ({ kind: 'driver', id: `fx${i}` })),
    ...Array.from({ length: 2_000 }, (_, i) => ({ kind: 'cell', id: latLngToCell(40 + i / 997, -74 + i / 331, 7) })),
    { kind: 'booking', id: 'Zürich-1' }, { kind: 'rider', id: '司机' },
  ];
  for (const shards of [1, 32, 1000]) {
    const p = { shards, placementRes: 4 };
    const off = refs.filter((ref) => shardOf(ref, p) !== jumpReference(hash64Utf8(placementKey(ref, 4)), shards));
    t.deepEqual(off, [], `${shards} shards`);
  }
});
