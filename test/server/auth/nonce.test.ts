import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { AuthConfigError } from '../../../src/server/auth/errors.ts';
import {
  DEFAULT_NONCE_TTL_MS,
  NonceCountTracker,
  NonceManager,
  secretBytes,
} from '../../../src/server/auth/nonce.ts';

const SECRET = 'cluster-secret-0123456789';
const T0 = Date.UTC(2030, 0, 1);

function clock(start = T0): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => { t += ms; } };
}

test('nonce layout: base64url of timestamp(8) | random(8) | HMAC-SHA256(secret, ts|random|realm)[0..16)', () => {
  const c = clock();
  const m = new NonceManager({ secret: SECRET, now: c.now });
  const nonce = m.issue('example.com');
  assert.match(nonce, /^[A-Za-z0-9_-]{43}$/);
  const bytes = Buffer.from(nonce, 'base64url');
  assert.equal(bytes.length, 32);
  assert.equal(Number(bytes.readBigUInt64BE(0)), T0);
  assert.equal(NonceManager.timestamp(nonce), T0);
  // the MAC, computed independently
  const mac = createHmac('sha256', SECRET).update(bytes.subarray(0, 16)).update('example.com').digest().subarray(0, 16);
  assert.deepEqual(bytes.subarray(16), mac);
  assert.notEqual(m.issue('example.com'), nonce, 'random part differs');
  assert.equal(m.ttlMs, DEFAULT_NONCE_TTL_MS);
});

test('verify: ok within the TTL, stale after, invalid for another realm, secret, or a tampered nonce', () => {
  const c = clock();
  const m = new NonceManager({ secret: SECRET, nonceTtlMs: 1000, now: c.now });
  const nonce = m.issue('example.com');
  assert.equal(m.verify(nonce, 'example.com'), 'ok');
  assert.equal(m.verify(nonce, 'example.org'), 'invalid');
  c.advance(1000);
  assert.equal(m.verify(nonce, 'example.com'), 'ok', 'age == TTL is still ok');
  c.advance(1);
  assert.equal(m.verify(nonce, 'example.com'), 'stale');
  assert.equal(m.verify(nonce, 'example.org'), 'invalid', 'stale needs a valid HMAC');

  const other = new NonceManager({ secret: SECRET.toUpperCase(), nonceTtlMs: 1000, now: c.now });
  assert.equal(other.verify(m.issue('example.com'), 'example.com'), 'invalid');
  const sameSecretAsBuffer = new NonceManager({ secret: Buffer.from(SECRET), now: c.now });
  assert.equal(sameSecretAsBuffer.verify(m.issue('example.com'), 'example.com'), 'ok', 'another node with the same secret');

  const fresh = m.issue('example.com');
  const bytes = Buffer.from(fresh, 'base64url');
  for (const at of [0, 7, 8, 15, 16, 31]) {
    const t = Buffer.from(bytes);
    t[at]! ^= 1;
    assert.equal(m.verify(t.toString('base64url'), 'example.com'), 'invalid', `byte ${at} flipped`);
  }
  // A forged later timestamp keeps nothing alive: the HMAC covers it.
  const forged = Buffer.from(bytes);
  forged.writeBigUInt64BE(BigInt(c.now() + 10_000), 0);
  assert.equal(m.verify(forged.toString('base64url'), 'example.com'), 'invalid');
  for (const bad of ['', 'x', fresh + 'A', fresh.slice(1), fresh.replace(/.$/, '='), fresh.slice(0, 42) + '+', 'dcd98b7102dd2f0e8b11d0f600bfb0c093']) {
    assert.equal(m.verify(bad, 'example.com'), 'invalid', bad);
  }
});

test('verify: only the canonical base64url spelling (unused low bits of the last character set → invalid)', () => {
  const m = new NonceManager({ secret: SECRET });
  // 32 bytes in 43 characters: the last one carries 4 data bits and 2 unused ones
  let nonce = m.issue('r');
  while (!/[AEIMQUYcgkosw048]$/.test(nonce)) nonce = m.issue('r');
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const sibling = nonce.slice(0, 42) + alphabet[alphabet.indexOf(nonce[42]!) + 1];
  assert.deepEqual(Buffer.from(sibling, 'base64url'), Buffer.from(nonce, 'base64url'), 'Node decodes both to the same bytes');
  assert.equal(m.verify(nonce, 'r'), 'ok');
  assert.equal(m.verify(sibling, 'r'), 'invalid');
});

test('clock skew between nodes: a nonce from a node ahead is ok up to maxClockSkewMs', () => {
  const ahead = clock(T0 + 20_000);
  const here = clock(T0);
  const a = new NonceManager({ secret: SECRET, now: ahead.now });
  const b = new NonceManager({ secret: SECRET, now: here.now, maxClockSkewMs: 30_000 });
  assert.equal(b.verify(a.issue('r'), 'r'), 'ok');
  const strict = new NonceManager({ secret: SECRET, now: here.now, maxClockSkewMs: 10_000 });
  assert.equal(strict.verify(a.issue('r'), 'r'), 'invalid');
});

test('secret: at least 16 bytes, string or Buffer; otherwise an AuthConfigError naming auth.secret', () => {
  assert.equal(secretBytes('0123456789abcdef').length, 16);
  assert.equal(secretBytes('€€€€€€').length, 18, 'UTF-8 bytes count');
  const isConfigError = (key: string) => (err: unknown) => {
    assert.ok(err instanceof AuthConfigError);
    assert.equal(err.key, key);
    assert.match(err.message, new RegExp(`^${key.replace('.', '\\.')}: `));
    return true;
  };
  assert.throws(() => new NonceManager({ secret: '0123456789abcde' }), isConfigError('auth.secret'));
  assert.throws(() => new NonceManager({ secret: Buffer.alloc(15) }), isConfigError('auth.secret'));
  assert.throws(() => new NonceManager({ secret: '' }), /at least 16 bytes, got 0/);
  assert.throws(() => secretBytes(42), isConfigError('auth.secret'));
  assert.throws(() => secretBytes(undefined, 'cluster.authSecret'), isConfigError('cluster.authSecret'));
  assert.throws(() => new NonceManager({ secret: SECRET, nonceTtlMs: 0 }), isConfigError('auth.nonceTtlMs'));
  assert.throws(() => new NonceManager({ secret: SECRET, nonceTtlMs: 1.5 }), isConfigError('auth.nonceTtlMs'));
  assert.throws(() => new NonceManager({ secret: SECRET, maxClockSkewMs: -1 }), isConfigError('auth.maxClockSkewMs'));
  // the manager keeps its own copy: wiping the caller's buffer changes nothing
  const buf = Buffer.from(SECRET);
  const m = new NonceManager({ secret: buf });
  const nonce = m.issue('r');
  buf.fill(0);
  assert.equal(m.verify(nonce, 'r'), 'ok');
});

test('NonceCountTracker: each nc once per nonce, out-of-order within 32, old and repeated counts refused', () => {
  const c = clock();
  const t = new NonceCountTracker({ retainMs: 1000, now: c.now });
  assert.equal(t.use('n1', 1), true);
  assert.equal(t.use('n1', 1), false, 'replay');
  assert.equal(t.use('n1', 3), true);
  assert.equal(t.use('n1', 2), true, 'late but unseen');
  assert.equal(t.use('n1', 2), false);
  assert.equal(t.use('n2', 1), true, 'counts are per nonce');
  assert.equal(t.use('n1', 40), true);
  assert.equal(t.use('n1', 9), true, '31 behind the top');
  assert.equal(t.use('n1', 8), false, '32 behind: outside the window');
  assert.equal(t.use('n1', 100), true, 'a jump past the window');
  assert.equal(t.use('n1', 40), false);
  // forgotten after retainMs (the nonce is stale by then anyway)
  c.advance(1001);
  assert.equal(t.use('n1', 100), true);
  assert.equal(t.size, 1, 'n2 expired too');
});

test('NonceCountTracker: bounded, the oldest nonce is forgotten first', () => {
  const t = new NonceCountTracker({ retainMs: 60_000, maxNonces: 2 });
  t.use('a', 1);
  t.use('b', 1);
  t.use('c', 1);
  assert.equal(t.size, 2);
  assert.equal(t.use('a', 1), true, 'a was evicted: its replay goes unnoticed');
  assert.equal(t.use('c', 1), false);
});
