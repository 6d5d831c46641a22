/**
 * The contract every store implementation meets, run by memory/sqlite/redis/postgres.test.ts. `open` must give
 * an empty, isolated store on every call (its own file, key prefix or schema), so counts and purges are exact.
 */
import { createHash } from 'node:crypto';
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { StoreError } from '../../src/store/errors.ts';
import type { Binding } from '../../src/store/location.ts';
import type { StoreOptions, Stores } from '../../src/store/options.ts';
import { binding, waitFor } from './helpers.ts';

export type OpenStores = (options?: StoreOptions) => Promise<Stores>;

const isStoreError = (code: string) => (e: unknown) => e instanceof StoreError && e.code === code;

export function locationContract(name: string, open: OpenStores): void {
  describe(`${name}: LocationStore and CredentialStore contract`, () => {
    const opened: Stores[] = [];
    // Timer off unless a test is about it, so purges happen only when a test asks.
    const fresh = async (options: StoreOptions = {}): Promise<Stores> => {
      const s = await open({ purgeIntervalMs: 0, ...options });
      opened.push(s);
      return s;
    };
    after(async () => {
      for (const s of opened) await s.close();
    });

    test('put then lookup returns every field as written', async () => {
      const { location } = await fresh();
      const b = binding({
        aor: 'sip:jürgen@example.com',
        contact: 'sip:jürgen@[2001:db8::1]:5070;transport=tcp;ob',
        q: 0.5,
        path: ['<sip:edge1.example.com;lr;ob>'],
        instanceId: '<urn:uuid:00000000-0000-1000-8000-000a95a0e128>',
        regId: 1,
        received: 'tcp:[2001:db8::1]:49152',
        nodeId: null,
      });
      await location.put(b);
      assert.deepEqual(await location.lookup(b.aor), [b]);
      assert.deepEqual(await location.lookup('sip:nobody@example.com'), []);
      assert.equal(await location.count(), 1);
    });

    test('the store keeps its own copy: mutating the argument or a result changes nothing', async () => {
      const { location } = await fresh();
      const b = binding({ path: ['<sip:p1;lr>'] });
      await location.put(b);
      b.path.push('<sip:p2;lr>');
      b.q = 0.1;
      const [got] = await location.lookup(b.aor);
      assert.deepEqual(got!.path, ['<sip:p1;lr>']);
      assert.equal(got!.q, 1);
      got!.path.push('x');
      assert.deepEqual((await location.lookup(b.aor))[0]!.path, ['<sip:p1;lr>']);
    });

    test('put upserts by AOR and contact', async () => {
      const { location } = await fresh();
      const first = binding({ contact: 'sip:alice@192.0.2.4', cseq: 1 });
      await location.put(first);
      const again = { ...first, cseq: 2, callId: 'other-call', expiresAt: first.expiresAt + 1000, updatedAt: first.updatedAt + 1 };
      await location.put(again);
      assert.deepEqual(await location.lookup(first.aor), [again]);
      assert.equal(await location.count(), 1);
    });

    test('several bindings per AOR; AORs are independent', async () => {
      const { location } = await fresh();
      const a1 = binding({ aor: 'sip:alice@example.com', contact: 'sip:alice@192.0.2.1' });
      const a2 = binding({ aor: 'sip:alice@example.com', contact: 'sip:alice@192.0.2.2' });
      const b1 = binding({ aor: 'sip:bob@example.com', contact: 'sip:alice@192.0.2.1' });
      for (const b of [a1, a2, b1]) await location.put(b);
      assert.deepEqual((await location.lookup('sip:alice@example.com')).map((b) => b.contact).sort(), [a1.contact, a2.contact]);
      assert.deepEqual(await location.lookup('sip:bob@example.com'), [b1]);
      assert.equal(await location.count(), 3);
      // The AOR is compared exactly: canonicalising is the registrar's job.
      assert.deepEqual(await location.lookup('sip:Alice@example.com'), []);
    });

    test('lookup orders by q descending, then most recently updated first', async () => {
      const { location } = await fresh();
      const t = Date.now();
      const low = binding({ contact: 'sip:a@192.0.2.1', q: 0.1, updatedAt: t + 50 });
      const midOld = binding({ contact: 'sip:a@192.0.2.2', q: 0.5, updatedAt: t });
      const midNew = binding({ contact: 'sip:a@192.0.2.3', q: 0.5, updatedAt: t + 10 });
      const top = binding({ contact: 'sip:a@192.0.2.4', q: 1, updatedAt: t - 1000 });
      const zero = binding({ contact: 'sip:a@192.0.2.5', q: 0, updatedAt: t + 99 });
      for (const b of [low, midOld, zero, top, midNew]) await location.put(b);
      assert.deepEqual(
        (await location.lookup(low.aor)).map((b) => b.contact),
        [top, midNew, midOld, low, zero].map((b) => b.contact),
      );
    });

    test('expired bindings are invisible; purgeExpired deletes exactly them', async () => {
      const { location } = await fresh();
      const now = Date.now();
      const live = binding({ aor: 'sip:carol@example.com', contact: 'sip:carol@192.0.2.1' });
      const dead = binding({ aor: 'sip:carol@example.com', contact: 'sip:carol@192.0.2.2', expiresAt: now - 1000 });
      const deadAlone = binding({ aor: 'sip:dave@example.com', expiresAt: now - 1 });
      for (const b of [live, dead, deadAlone]) await location.put(b);
      assert.deepEqual(await location.lookup('sip:carol@example.com'), [live]);
      assert.deepEqual(await location.lookup('sip:dave@example.com'), []);
      assert.equal(await location.count(), 1);
      // carol's expired binding sits beside a live one, so only a purge can remove it (Redis expires whole keys;
      // an AOR with nothing live may vanish by itself, which is why deadAlone is not counted here).
      const purged = await location.purgeExpired();
      assert.ok(purged === 1 || purged === 2, `purged ${purged}`);
      assert.equal(await location.purgeExpired(), 0);
      assert.deepEqual(await location.lookup('sip:carol@example.com'), [live]);
      assert.equal(await location.count(), 1);
    });

    test('a binding stops being returned once its expiry passes', async () => {
      const { location } = await fresh();
      const soon = binding({ contact: 'sip:alice@192.0.2.9', expiresAt: Date.now() + 150 });
      await location.put(soon);
      assert.equal((await location.lookup(soon.aor)).length, 1);
      await waitFor(async () => (await location.lookup(soon.aor)).length === 0, 'the binding to expire', 3000);
      assert.equal(await location.count(), 0);
    });

    test('the periodic purge deletes expired bindings; close() stops it', async () => {
      const { location } = await fresh({ purgeIntervalMs: 40 });
      const results: number[] = [];
      let ticks = 0;
      // The purger calls location.purgeExpired() each tick; observe it without changing what it does.
      const original = location.purgeExpired.bind(location);
      location.purgeExpired = async () => {
        ticks++;
        const n = await original();
        results.push(n);
        return n;
      };
      await location.put(binding({ aor: 'sip:erin@example.com', contact: 'sip:erin@192.0.2.1' }));
      await location.put(binding({ aor: 'sip:erin@example.com', contact: 'sip:erin@192.0.2.2', expiresAt: Date.now() - 5 }));
      await waitFor(() => results.reduce((a, b) => a + b, 0) === 1, 'the periodic purge to delete the expired binding', 3000);
      await location.close();
      const calls = ticks;
      // Proving a timer is gone takes waiting: five intervals, in which a live timer would have ticked.
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(ticks, calls, 'purge ran after close()');
    });

    test('remove deletes bindings with that contact only', async () => {
      const { location } = await fresh();
      const keep = binding({ contact: 'sip:alice@192.0.2.1' });
      const drop = binding({ contact: 'sip:alice@192.0.2.2' });
      await location.put(keep);
      await location.put(drop);
      assert.equal(await location.remove(drop.aor, drop.contact), true);
      assert.equal(await location.remove(drop.aor, drop.contact), false);
      assert.equal(await location.remove('sip:nobody@example.com', drop.contact), false);
      assert.deepEqual(await location.lookup(keep.aor), [keep]);
      const expired = binding({ contact: 'sip:alice@192.0.2.3', expiresAt: Date.now() - 1 });
      await location.put(expired);
      assert.equal(await location.remove(expired.aor, expired.contact), false, 'an expired binding is not reported as removed');
      assert.deepEqual(await location.lookup(keep.aor), [keep]);
    });

    test('removeAll deletes the AOR and counts its live bindings', async () => {
      const { location } = await fresh();
      for (let i = 1; i <= 3; i++) await location.put(binding({ contact: `sip:alice@192.0.2.${i}` }));
      await location.put(binding({ contact: 'sip:alice@192.0.2.9', expiresAt: Date.now() - 1 }));
      const other = binding({ aor: 'sip:bob@example.com' });
      await location.put(other);
      assert.equal(await location.removeAll('sip:alice@example.com'), 3);
      assert.deepEqual(await location.lookup('sip:alice@example.com'), []);
      assert.equal(await location.removeAll('sip:alice@example.com'), 0);
      assert.deepEqual(await location.lookup(other.aor), [other]);
      assert.equal(await location.count(), 1);
    });

    test('same +sip.instance and reg-id replaces the old contact (RFC 5626 §6)', async () => {
      const { location } = await fresh();
      const instanceId = '<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>';
      const aor = 'sip:frank@example.com';
      const flow1 = binding({ aor, contact: 'sip:frank@192.0.2.1:5060;ob', instanceId, regId: 1, cseq: 1 });
      await location.put(flow1);
      // The UA came back from a new address: same instance and reg-id, so it replaces flow1.
      const flow1b = binding({ aor, contact: 'sip:frank@198.51.100.7:40000;ob', instanceId, regId: 1, cseq: 2 });
      await location.put(flow1b);
      assert.deepEqual(await location.lookup(aor), [flow1b]);
      // A second flow (reg-id 2) of the same instance is a binding of its own.
      const flow2 = binding({ aor, contact: 'sip:frank@198.51.100.7:40001;ob', instanceId, regId: 2, updatedAt: flow1b.updatedAt - 1 });
      await location.put(flow2);
      // So is a different instance with the same reg-id, and a plain contact.
      const other = binding({ aor, contact: 'sip:frank@203.0.113.5;ob', instanceId: '<urn:uuid:00000000-0000-0000-0000-000000000002>', regId: 1, updatedAt: flow1b.updatedAt - 2 });
      const plain = binding({ aor, contact: flow1b.contact, updatedAt: flow1b.updatedAt - 3 });
      await location.put(other);
      await location.put(plain);
      assert.deepEqual(await location.lookup(aor), [flow1b, flow2, other, plain]);
      assert.equal(await location.remove(aor, flow1b.contact), true, 'remove by contact covers instance bindings too');
      assert.deepEqual(await location.lookup(aor), [flow2, other]);
    });

    test('Path values keep their order and exact text', async () => {
      const { location } = await fresh();
      const path = [
        '<sip:edge1.example.com;lr;ob>',
        '<sip:core,2.example.com;lr>',
        '"Proxy \\"3\\"" <sip:p3.example.com;lr;x="a,b{c}">',
        '<sip:[2001:db8::5]:5061;transport=tls;lr>',
      ];
      const withPath = binding({ contact: 'sip:alice@192.0.2.1', path });
      const noPath = binding({ contact: 'sip:alice@192.0.2.2', path: [], q: 0.5 });
      await location.put(withPath);
      await location.put(noPath);
      const [a, b] = await location.lookup(withPath.aor);
      assert.deepEqual(a!.path, path);
      assert.deepEqual(b!.path, []);
    });

    test('malformed bindings are refused with STORE_INVALID', async () => {
      const { location } = await fresh();
      const bad: Partial<Binding>[] = [{ q: 1.5 }, { q: Number.NaN }, { regId: 1 }, { aor: '' }, { cseq: -1 }, { expiresAt: 1.5 }, { path: [1 as unknown as string] }];
      for (const over of bad) await assert.rejects(location.put(binding(over)), isStoreError('STORE_INVALID'), JSON.stringify(over));
      assert.equal(await location.count(), 0);
    });

    test('credentials: set stores the RFC 2617 / RFC 8760 HA1 values, not the password', async () => {
      const { credentials } = await fresh();
      await credentials.set('bob', 'biloxi.com', 'zanzibar');
      const md5 = createHash('md5').update('bob:biloxi.com:zanzibar').digest('hex');
      const sha256 = createHash('sha256').update('bob:biloxi.com:zanzibar').digest('hex');
      assert.deepEqual(await credentials.get('bob', 'biloxi.com'), { username: 'bob', realm: 'biloxi.com', ha1Md5: md5, ha1Sha256: sha256 });
      assert.equal(await credentials.get('Bob', 'biloxi.com'), null, 'usernames are case-sensitive');
      assert.equal(await credentials.get('bob', 'atlanta.com'), null);
    });

    test('credentials: replace, HA1-only provisioning, separators that cannot collide, delete', async () => {
      const { credentials } = await fresh();
      await credentials.set('bob', 'biloxi.com', 'zanzibar');
      await credentials.set('bob', 'biloxi.com', 'new secret');
      const ha1 = createHash('md5').update('bob:biloxi.com:new secret').digest('hex');
      assert.equal((await credentials.get('bob', 'biloxi.com'))?.ha1Md5, ha1);
      // Provisioned from an MD5-only system: the old SHA-256 HA1 must not survive.
      await credentials.set('bob', 'biloxi.com', { ha1Md5: ha1.toUpperCase() });
      assert.deepEqual(await credentials.get('bob', 'biloxi.com'), { username: 'bob', realm: 'biloxi.com', ha1Md5: ha1 });
      await assert.rejects(credentials.set('bob', 'biloxi.com', { ha1Md5: 'xyz' }), isStoreError('STORE_INVALID'));
      await credentials.set('a:b', 'c', 'one');
      await credentials.set('a', 'b:c', 'two');
      assert.notEqual((await credentials.get('a:b', 'c'))?.ha1Md5, (await credentials.get('a', 'b:c'))?.ha1Md5);
      assert.equal(await credentials.delete('bob', 'biloxi.com'), true);
      assert.equal(await credentials.delete('bob', 'biloxi.com'), false);
      assert.equal(await credentials.get('bob', 'biloxi.com'), null);
      assert.ok(await credentials.get('a:b', 'c'));
    });

    test('a closed store refuses work with STORE_CLOSED', async () => {
      const stores = await fresh();
      await stores.close();
      await stores.close(); // idempotent
      await assert.rejects(stores.location.lookup('sip:alice@example.com'), isStoreError('STORE_CLOSED'));
      await assert.rejects(stores.location.put(binding()), isStoreError('STORE_CLOSED'));
    });
  });
}
