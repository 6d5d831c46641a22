import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { affinityKey, AFFINITY_PARAM, hashString, mix32, parseAffinityKey, rendezvousWeight } from '../../../src/server/cluster/affinity.ts';

/**
 * MurmurHash3 x86_32 over bytes, written from the reference (SMHasher's MurmurHash3.cpp) independently of the
 * code under test: hashString(s) must equal it over the UTF-16LE bytes of s.
 */
function murmur3Bytes(bytes: Uint8Array, seed = 0): number {
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  const rotl = (x: number, r: number): number => ((x << r) | (x >>> (32 - r))) >>> 0;
  let h = seed >>> 0;
  const blocks = bytes.length >> 2;
  for (let b = 0; b < blocks; b++) {
    const i = b * 4;
    let k = (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24)) >>> 0;
    k = Math.imul(k, c1);
    k = rotl(k, 15);
    k = Math.imul(k, c2);
    h = (h ^ k) >>> 0;
    h = rotl(h, 13);
    h = (Math.imul(h, 5) + 0xe6546b64) >>> 0;
  }
  const tail = blocks * 4;
  const rest = bytes.length & 3;
  if (rest > 0) {
    let k1 = 0;
    if (rest === 3) k1 ^= bytes[tail + 2]! << 16;
    if (rest >= 2) k1 ^= bytes[tail + 1]! << 8;
    k1 ^= bytes[tail]!;
    k1 = Math.imul(k1, c1);
    k1 = rotl(k1, 15);
    k1 = Math.imul(k1, c2);
    h = (h ^ k1) >>> 0;
  }
  h = (h ^ bytes.length) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

const utf16 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'utf16le'));
const units = (...u: number[]): string => String.fromCharCode(...u);
const hex8 = (n: number): string => n.toString(16).padStart(8, '0');

describe('hashString: MurmurHash3 x86_32 of the UTF-16 code units', () => {
  test('the byte reference used here reproduces published MurmurHash3 x86_32 vectors', () => {
    const vectors: Array<[number[] | string, number, number]> = [
      [[], 0, 0x00000000],
      [[], 1, 0x514e28b7],
      [[], 0xffffffff, 0x81f16f39],
      [[0xff, 0xff, 0xff, 0xff], 0, 0x76293b50],
      [[0x21, 0x43, 0x65, 0x87], 0, 0xf55b516b],
      [[0x21, 0x43, 0x65, 0x87], 0x5082edee, 0x2362f9de],
      [[0x21, 0x43, 0x65], 0, 0x7e4a8634],
      [[0x21, 0x43], 0, 0xa0f7b07a],
      [[0x21], 0, 0x72661cf4],
      [[0, 0, 0, 0], 0, 0x2362f9de],
      ['The quick brown fox jumps over the lazy dog', 0x9747b28c, 0x2fa826cd],
      ['Hello, world!', 1234, 0xfaf6cdb3],
    ];
    for (const [input, seed, want] of vectors) {
      const bytes = typeof input === 'string' ? new Uint8Array(Buffer.from(input, 'latin1')) : new Uint8Array(input);
      assert.equal(murmur3Bytes(bytes, seed), want, `${JSON.stringify(input)} seed ${seed}`);
    }
  });

  test('published vectors that can be written as 16-bit code units', () => {
    assert.equal(hashString(''), 0);
    assert.equal(hashString('', 1), 0x514e28b7);
    assert.equal(hashString('', 0xffffffff), 0x81f16f39);
    assert.equal(hashString(units(0xffff, 0xffff)), 0x76293b50);
    assert.equal(hashString(units(0x4321, 0x8765)), 0xf55b516b);
    assert.equal(hashString(units(0x4321, 0x8765), 0x5082edee), 0x2362f9de);
    assert.equal(hashString(units(0x4321)), 0xa0f7b07a);
    assert.equal(hashString(units(0, 0)), 0x2362f9de);
  });

  test('equals the byte reference over UTF-16LE for Call-IDs of every length, ASCII and not', () => {
    const samples = [
      'a', 'ab', 'abc', 'a84b4c76e66710', 'a84b4c76e66710@pc33.atlanta.com', '3848276298220188511@atlanta.example.com',
      'ünïcødé-Call-ID', '通話-42@例え.jp', '\u{1f4de}call', 'x'.repeat(257),
    ];
    for (let i = 0; i < 500; i++) samples.push(randomBytes(1 + (i % 40)).toString(i % 2 === 0 ? 'hex' : 'base64'));
    for (const s of samples) {
      assert.equal(hashString(s), murmur3Bytes(utf16(s)), s);
      assert.equal(hashString(s, 0x5082edee), murmur3Bytes(utf16(s), 0x5082edee), `${s} (seeded)`);
    }
  });

  test('an unsigned 32-bit integer; the same Call-ID always gives the same value', () => {
    for (let i = 0; i < 200; i++) {
      const id = randomBytes(12).toString('hex') + '@host';
      const h = hashString(id);
      assert.ok(Number.isInteger(h) && h >= 0 && h <= 0xffffffff, `${h}`);
      assert.equal(hashString(id), h);
      assert.equal(hashString(id.slice(0, 5) + id.slice(5)), h, 'a string built another way');
    }
  });

  test('mix32 is the MurmurHash3 finaliser: unsigned, and 0 stays 0', () => {
    assert.equal(mix32(0), 0);
    for (const x of [1, 0x80000000, 0xffffffff, -1, 12345]) {
      const y = mix32(x);
      assert.ok(y >= 0 && y <= 0xffffffff);
      assert.equal(mix32(x), y);
    }
    assert.equal(mix32(-1), mix32(0xffffffff), 'a signed input is taken as its 32 bits');
  });
});

describe('affinity keys', () => {
  test('fixed Call-IDs give fixed keys (a change here would move every call of a cluster in a rolling upgrade)', () => {
    // Literal values, checked against the independent byte reference (MurmurHash3 x86_32, seed 0, UTF-16LE).
    const pinned: Array<[string, string]> = [
      ['a84b4c76e66710@pc33.atlanta.com', 'cd64a171'],
      ['call-1', 'a3e598be'],
      ['', '00000000'],
    ];
    for (const [callId, key] of pinned) {
      assert.equal(hex8(murmur3Bytes(utf16(callId))), key, `reference for ${JSON.stringify(callId)}`);
      assert.equal(affinityKey(callId), key, JSON.stringify(callId));
    }
  });

  test('always 8 lowercase hex digits, and parseAffinityKey gives back the hash', () => {
    assert.equal(AFFINITY_PARAM, 'sfk');
    for (let i = 0; i < 2000; i++) {
      const callId = randomBytes(1 + (i % 24)).toString('base64url');
      const key = affinityKey(callId);
      assert.match(key, /^[0-9a-f]{8}$/);
      assert.equal(parseAffinityKey(key), hashString(callId));
    }
    // Small hashes keep their leading zeros (a key that lost them would not parse).
    assert.equal(parseAffinityKey(hex8(0x1f)), 0x1f);
    assert.equal(parseAffinityKey('00000000'), 0);
    assert.equal(parseAffinityKey('ffffffff'), 0xffffffff);
    assert.equal(parseAffinityKey('DEADBEEF'), 0xdeadbeef, 'upper case is accepted');
  });

  test('anything but 8 hex digits is not a key', () => {
    for (const bad of [null, undefined, '', '1234567', '123456789', 'zzzzzzzz', '1234567g', '0x123456', '-1234567', '+1234567', ' 1234567', '1234567 ', '12 34567', '1.234567', 'ｆｆｆｆｆｆｆｆ']) {
      assert.equal(parseAffinityKey(bad), null, JSON.stringify(bad));
    }
  });
});

describe('rendezvousWeight', () => {
  test('deterministic and unsigned; depends on both the node and the key', () => {
    const seeds = ['node-1', 'node-2', 'node-3'].map((id) => hashString(id));
    const key = hashString('some-call');
    const w = seeds.map((s) => rendezvousWeight(s, key));
    for (const x of w) assert.ok(Number.isInteger(x) && x >= 0 && x <= 0xffffffff);
    assert.deepEqual(seeds.map((s) => rendezvousWeight(s, key)), w);
    assert.equal(new Set(w).size, 3, 'three nodes, three weights');
    assert.notEqual(rendezvousWeight(seeds[0]!, key), rendezvousWeight(seeds[0]!, hashString('another-call')));
  });

  test('for one node, weights over keys look uniform (each quarter of the range gets 25 % ± 2 %)', () => {
    const seed = hashString('node-1');
    const quarters = [0, 0, 0, 0];
    const n = 40_000;
    for (let i = 0; i < n; i++) quarters[rendezvousWeight(seed, hashString(randomBytes(10).toString('hex'))) >>> 30]!++;
    for (const q of quarters) assert.ok(Math.abs(q / n - 0.25) <= 0.02, JSON.stringify(quarters));
  });
});
