import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { hashString } from '../../src/server/cluster/affinity.ts';
import { compareVersions, failoverCandidates, newCallCandidates, pickNode, type RoutingNode } from '../../src/balancer/routing.ts';

const node = (id: string, version = '1.0.0'): RoutingNode => ({ id, seed: hashString(id), version });
const ids = (nodes: readonly RoutingNode[]): string[] => nodes.map((n) => n.id);

/** 30,000 random Call-IDs (different at every run), hashed as the balancer hashes them. */
function randomKeys(n = 30_000): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(hashString(`${randomBytes(9).toString('base64url')}@${i % 7 === 0 ? 'pc33.atlanta.com' : '127.0.0.1'}`));
  return out;
}

function assign(nodes: readonly RoutingNode[], keys: readonly number[]): string[] {
  return keys.map((k) => pickNode(nodes, k)!.id);
}

function shares(owners: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const o of owners) out[o] = (out[o] ?? 0) + 1;
  for (const k of Object.keys(out)) out[k] = out[k]! / owners.length;
  return out;
}

const pct = (x: number): string => `${(x * 100).toFixed(2)} %`;

describe('pickNode: rendezvous hashing', () => {
  const three = ['node-1', 'node-2', 'node-3'].map((id) => node(id));
  const keys = randomKeys();
  const owners = assign(three, keys);

  test('no candidates → null; one candidate → it', () => {
    assert.equal(pickNode([], 12345), null);
    const only = node('node-1');
    for (const k of keys.slice(0, 100)) assert.equal(pickNode([only], k), only);
  });

  test('the choice depends on the set of nodes, not on their order', () => {
    const reversed = [...three].reverse();
    const rotated = [three[1]!, three[2]!, three[0]!];
    for (const [i, k] of keys.slice(0, 3000).entries()) {
      assert.equal(pickNode(reversed, k)!.id, owners[i]);
      assert.equal(pickNode(rotated, k)!.id, owners[i]);
    }
  });

  test('equal weights (same seed) are broken by id, whatever the order', () => {
    const a = { id: 'a', seed: 42, version: '1' };
    const b = { id: 'b', seed: 42, version: '1' };
    for (const k of keys.slice(0, 50)) {
      assert.equal(pickNode([a, b], k)!.id, 'a');
      assert.equal(pickNode([b, a], k)!.id, 'a');
    }
  });

  test('3 nodes, 30,000 random Call-IDs: each node gets 33 % ± 3 %', () => {
    const s = shares(owners);
    console.log(`# shares over 3 nodes: ${Object.entries(s).map(([k, v]) => `${k} ${pct(v)}`).join(', ')}`);
    assert.deepEqual(Object.keys(s).sort(), ['node-1', 'node-2', 'node-3']);
    for (const [id, v] of Object.entries(s)) assert.ok(Math.abs(v - 1 / 3) <= 0.03, `${id}: ${pct(v)}`);
  });

  test('a node removed: no key of a survivor moves; the dead node\'s keys split 50 % ± 15 % (observed much tighter)', () => {
    for (const dead of three) {
      const survivors = three.filter((n) => n !== dead);
      const after = assign(survivors, keys);
      const moved: Record<string, number> = {};
      let orphans = 0;
      for (let i = 0; i < keys.length; i++) {
        if (owners[i] === dead.id) {
          orphans++;
          moved[after[i]!] = (moved[after[i]!] ?? 0) + 1;
        } else {
          assert.equal(after[i], owners[i], `key ${keys[i]} of ${owners[i]} moved to ${after[i]} when ${dead.id} left`);
        }
      }
      assert.ok(orphans > 0);
      const split = survivors.map((n) => (moved[n.id] ?? 0) / orphans);
      console.log(`# ${dead.id} gone: its ${orphans} keys went ${survivors.map((n, i) => `${n.id} ${pct(split[i]!)}`).join(', ')}`);
      for (const [i, v] of split.entries()) {
        assert.ok(Math.abs(v - 0.5) <= 0.15, `${survivors[i]!.id} took ${pct(v)} of ${dead.id}'s keys`);
        // 10,000 keys split at random: one standard deviation is 0.5 %; 3 % would be 6 of them.
        assert.ok(Math.abs(v - 0.5) <= 0.03, `${survivors[i]!.id} took ${pct(v)} of ${dead.id}'s keys (expected much tighter than ± 15 %)`);
      }
    }
  });

  test('a 4th node added: every key that moves goes to it, and it takes ≈ 25 %', () => {
    const four = [...three, node('node-4')];
    const after = assign(four, keys);
    let toNew = 0;
    for (let i = 0; i < keys.length; i++) {
      if (after[i] === owners[i]) continue;
      assert.equal(after[i], 'node-4', `key ${keys[i]} moved from ${owners[i]} to ${after[i]}, not to the new node`);
      toNew++;
    }
    const share = toNew / keys.length;
    console.log(`# node-4 joined: ${pct(share)} of the keys moved to it`);
    assert.ok(Math.abs(share - 0.25) <= 0.03, `the new node took ${pct(share)}`);
    // It takes from every old node alike (about a quarter of each one's keys).
    for (const old of three) {
      const had = owners.filter((o) => o === old.id).length;
      const lost = owners.filter((o, i) => o === old.id && after[i] === 'node-4').length;
      assert.ok(Math.abs(lost / had - 0.25) <= 0.04, `${old.id} lost ${pct(lost / had)} of its keys`);
    }
  });

  test('another balancer with the same nodes (built separately) makes the same choices', () => {
    const elsewhere = ['node-3', 'node-1', 'node-2'].map((id) => ({ id: String(id), seed: hashString(id), version: '1.0.0' }));
    for (const [i, k] of keys.slice(0, 5000).entries()) assert.equal(pickNode(elsewhere, k)!.id, owners[i]);
  });
});

describe('compareVersions', () => {
  test('numeric parts compare as numbers', () => {
    assert.equal(compareVersions('1.10.0', '1.9.2'), 1);
    assert.equal(compareVersions('1.9.2', '1.10.0'), -1);
    assert.equal(compareVersions('2.0.0', '10.0.0'), -1);
    assert.equal(compareVersions('0.1.10', '0.1.9'), 1);
    assert.equal(compareVersions('1.2.3', '1.2.4'), -1);
  });

  test('equal versions, and missing parts count as 0', () => {
    assert.equal(compareVersions('1.2.3', '1.2.3'), 0);
    assert.equal(compareVersions('1.2', '1.2.0'), 0);
    assert.equal(compareVersions('1.2.0.0', '1.2'), 0);
    assert.equal(compareVersions('1.3', '1.2.9'), 1);
    assert.equal(compareVersions('01.2', '1.2'), 0, 'leading zeros are numbers');
  });

  test('text parts compare as text; the result is always -1, 0 or 1 and antisymmetric', () => {
    assert.equal(compareVersions('1.0.0-beta', '1.0.0-alpha'), 1);
    assert.equal(compareVersions('1.0.0-alpha', '1.0.0-beta'), -1);
    assert.equal(compareVersions('1.0.0-rc.2', '1.0.0-rc.10'), -1, 'numbers after text still compare as numbers');
    assert.equal(compareVersions('1.0.x', '1.0.x'), 0);
    const vs = ['1', '1.0', '1.0.1', '1.10', '1.9', '2.0.0-beta', '2.0.0-alpha', '2.0.0', 'abc', '1.a', '1.b.3'];
    for (const a of vs) {
      for (const b of vs) {
        const c = compareVersions(a, b);
        assert.ok(c === -1 || c === 0 || c === 1, `${a} vs ${b}: ${c}`);
        assert.equal(compareVersions(b, a), c === 0 ? 0 : -c, `${a} vs ${b} antisymmetric`);
      }
    }
  });
});

describe('newCallCandidates and failoverCandidates', () => {
  test('new calls go only to the nodes of the highest version', () => {
    const nodes = [node('a', '1.9.2'), node('b', '1.10.0'), node('c', '1.10.0'), node('d', '1.2.0')];
    assert.deepEqual(ids(newCallCandidates(nodes)), ['b', 'c']);
    assert.deepEqual(ids(newCallCandidates([...nodes].reverse())), ['c', 'b']);
    assert.deepEqual(ids(newCallCandidates([node('x', '3.0.0')])), ['x']);
    assert.deepEqual(newCallCandidates([]), []);
    const same = [node('a'), node('b'), node('c')];
    assert.deepEqual(ids(newCallCandidates(same)), ['a', 'b', 'c'], 'one version: every node');
  });

  test('a dead node\'s calls go to survivors of its version when there are any', () => {
    const alive = [node('a', '1.0.0'), node('b', '2.0.0'), node('c', '2.0.0'), node('d', '1.0.0')];
    assert.deepEqual(ids(failoverCandidates(alive, '1.0.0')), ['a', 'd']);
    assert.deepEqual(ids(failoverCandidates(alive, '2.0.0')), ['b', 'c']);
    assert.deepEqual(ids(failoverCandidates(alive, '3.0.0')), ['a', 'b', 'c', 'd'], 'none of its version: any survivor');
    assert.deepEqual(ids(failoverCandidates(alive, null)), ['a', 'b', 'c', 'd'], 'unknown version: any survivor');
    assert.deepEqual(failoverCandidates([], '1.0.0'), []);
  });

  test('during a rolling upgrade, a call of an old node that dies stays on the old version', () => {
    const alive = [node('old-1', '1.0.0'), node('new-1', '1.1.0'), node('new-2', '1.1.0')];
    const keys = randomKeys(2000);
    for (const k of keys) {
      assert.equal(pickNode(failoverCandidates(alive, '1.0.0'), k)!.id, 'old-1');
      assert.match(pickNode(newCallCandidates(alive), k)!.id, /^new-/);
    }
  });
});
