import test from 'ava';
import { movedShards, placeShards, shardsOf } from '../runtime/placement.ts';

const S = 32;
const nodes = (n: number) => Array.from({ length: n }, (_, i) => `node-${i}`);

test('every shard has exactly one owner among the members', (t) => {
  for (const n of [1, 2, 3, 5, 8]) {
    const map = placeShards(S, nodes(n));
    t.is(map.size, S);
    for (const owner of map.values()) t.true(nodes(n).includes(owner));
  }
  t.is(placeShards(S, []).size, 0);
});

test('going from N to N+1 members moves at most ceil(S/(N+1)) + slack shards, all to the new member', (t) => {
  const slack = 4;
  for (let n = 1; n <= 7; n++) {
    const before = placeShards(S, nodes(n));
    const after = placeShards(S, nodes(n + 1), before);
    const moved = movedShards(before, after);
    t.true(moved.length <= Math.ceil(S / (n + 1)) + slack, `${n} -> ${n + 1}: moved ${moved.length}`);
    for (const shard of moved) t.is(after.get(shard), `node-${n}`, 'a moved shard only ever moves to the new member');
  }
});

test('removing a member moves only its shards', (t) => {
  const all = nodes(5);
  const before = placeShards(S, all);
  const after = placeShards(S, all.filter((n) => n !== 'node-2'), before);
  t.deepEqual(movedShards(before, after).sort((a, b) => a - b), shardsOf(before, 'node-2'));
});

test('the map does not depend on the order members are listed in', (t) => {
  t.deepEqual([...placeShards(S, ['b', 'a', 'c'])], [...placeShards(S, ['c', 'b', 'a'])]);
});

test('loads are balanced within one shard', (t) => {
  for (const n of [2, 3, 5, 7]) {
    const map = placeShards(S, nodes(n));
    const loads = nodes(n).map((m) => shardsOf(map, m).length);
    t.true(Math.max(...loads) - Math.min(...loads) <= 1, `${n} nodes: ${loads}`);
  }
});

test('a stable membership keeps its map', (t) => {
  const before = placeShards(S, nodes(4));
  t.deepEqual(movedShards(before, placeShards(S, nodes(4), before)), []);
});

test('a sticky join moves far fewer shards than round-robin re-assignment', (t) => {
  const roundRobin = (n: number) => new Map(Array.from({ length: S }, (_, s) => [s, `node-${s % n}`]));
  const before = placeShards(S, nodes(3));
  const sticky = movedShards(before, placeShards(S, nodes(4), before)).length;
  const naive = movedShards(roundRobin(3), roundRobin(4)).length;
  t.log(`3 -> 4 nodes: sticky rendezvous moved ${sticky}/${S}, round-robin moved ${naive}/${S}`);
  t.true(sticky <= Math.ceil(S / 4));
  t.true(sticky < naive);
});
