import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AttributeError } from '../../../src/server/app/attributes.ts';
import { SessionManager } from '../../../src/server/app/session.ts';

test('setAttribute refuses what JSON cannot carry, at once, naming the attribute and the fault', () => {
  const s = new SessionManager().create('app');
  const leg = s.createSession();
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  const refused: Array<[unknown, RegExp]> = [
    [() => 1, /function/],
    [undefined, /undefined/],
    [10n, /bigint/],
    [NaN, /not a finite number/],
    [Infinity, /not a finite number/],
    [new Date(0), /Date is not a plain object/],
    [new Map(), /Map is not a plain object/],
    [{ nested: { when: new Date(0) } }, /at nested\.when/],
    [[1, Symbol('x')], /symbol at \[1\]/],
    [cyclic, /cycle/],
  ];
  for (const [i, [value, why]] of refused.entries()) {
    assert.throws(() => s.setAttribute('bad', value), (err: unknown) => {
      assert.ok(err instanceof AttributeError, `AttributeError for case ${i}`);
      assert.equal(err.attribute, 'bad');
      assert.match(err.message, /attribute "bad" is not JSON-serialisable/);
      assert.match(err.message, why);
      return true;
    });
    assert.throws(() => leg.setAttribute('bad', value), AttributeError);
  }
  assert.equal(s.getAttribute('bad'), undefined, 'a refused value is not stored');
  assert.equal(s.attributes.dirty, false, 'a refused write does not mark the session dirty');
});

test('accepted attributes are copies: later changes by the app do not leak into the session', () => {
  const s = new SessionManager().create('app');
  const value = { caller: 'alice', legs: [1, 2], nested: { ok: true, n: null } };
  s.setAttribute('call', value);
  value.legs.push(3);
  assert.deepEqual(s.getAttribute('call'), { caller: 'alice', legs: [1, 2], nested: { ok: true, n: null } });
  assert.equal(s.attributes.dirty, true);
  assert.deepEqual(JSON.parse(JSON.stringify(s.attributes)), { call: { caller: 'alice', legs: [1, 2], nested: { ok: true, n: null } } });
  assert.equal(s.removeAttribute('call'), true);
  assert.deepEqual(s.attributes.names(), []);
});

test('sessions: legs carry their application session id; the last leg ending ends the application session', () => {
  const m = new SessionManager();
  const destroyed: string[] = [];
  m.onDestroyed = (s) => destroyed.push(s.id);
  const s = m.create('app');
  const a = s.createSession();
  const b = s.createSession();
  assert.ok(a.id.startsWith(s.id + '.'));
  assert.equal(m.find(a.id), s, 'found from a leg id (our tag)');
  assert.equal(m.find(s.id), s);
  a.invalidate();
  assert.equal(s.valid, true);
  b.invalidate();
  assert.equal(s.valid, false);
  assert.deepEqual(destroyed, [s.id]);
  assert.equal(m.find(a.id), undefined);
});

test('an application session kept for a while ends at its expiry (one sweep, no timer per session)', () => {
  const m = new SessionManager(60_000);
  const s = m.create('app');
  s.createSession();
  m.keepFor(s, 1000);
  m.sweep(Date.now() + 500);
  assert.equal(s.valid, true, 'not before its expiry');
  m.sweep(Date.now() + 1001);
  assert.equal(s.valid, false, 'after it');
  assert.equal(m.size, 0);
  m.clear();
});
