/**
 * Replicator (src/server/replication.ts): application sessions written to the shared SessionStore and rebuilt on
 * another node, versioned writes and conflicts between nodes, and persistent timers shared among the survivors
 * of a dead node by rendezvous hashing. The store is the in-memory one (its contract is test/store/sessions);
 * dialogs are restored into the DialogLayer of real SIP stacks (UDP on 127.0.0.1, port 0), one per node.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Replicator } from '../../src/server/replication.ts';
import { SessionManager, type SipApplicationSession } from '../../src/server/app/session.ts';
import { affinityKey, hashString, parseAffinityKey, pickNode } from '../../src/server/cluster/affinity.ts';
import { Dialog, dialogId, type DialogRecord } from '../../src/sip/dialog/dialog.ts';
import { SipStack } from '../../src/sip/stack.ts';
import { MemorySessionStore } from '../../src/store/memory.ts';
import { parseMessage } from '../../src/sip/message/parser.ts';
import type { SipRequest } from '../../src/sip/message/message.ts';
import type { ClientTransaction } from '../../src/sip/transaction/client.ts';
import type { IncomingRequest } from '../../src/server/app/messages.ts';
import type { Destination, Source } from '../../src/sip/transport/types.ts';
import { StoreError } from '../../src/store/errors.ts';
import type { SessionEntry, SessionStore, StoredTimer } from '../../src/store/sessions.ts';

/** A SessionStore that counts what reaches the backend, so "no write" is checked below the Replicator's counters. */
class CountingStore implements SessionStore {
  readonly calls = { put: 0, get: 0, delete: 0, deleteMany: 0, putTimer: 0, takeTimer: 0, deleteTimer: 0, timersOf: 0, claimTimer: 0 };
  constructor(readonly inner: SessionStore = new MemorySessionStore()) {}
  put(key: string, data: string, expected: number, ttlMs: number): Promise<number> {
    this.calls.put++;
    return this.inner.put(key, data, expected, ttlMs);
  }
  get(key: string): Promise<SessionEntry | null> {
    this.calls.get++;
    return this.inner.get(key);
  }
  delete(key: string): Promise<void> {
    this.calls.delete++;
    return this.inner.delete(key);
  }
  deleteMany(keys: readonly string[]): Promise<void> {
    this.calls.deleteMany++;
    return this.inner.deleteMany(keys);
  }
  putTimer(t: StoredTimer): Promise<void> {
    this.calls.putTimer++;
    return this.inner.putTimer(t);
  }
  takeTimer(id: string, owner: string): Promise<boolean> {
    this.calls.takeTimer++;
    return this.inner.takeTimer(id, owner);
  }
  deleteTimer(id: string): Promise<void> {
    this.calls.deleteTimer++;
    return this.inner.deleteTimer(id);
  }
  timersOf(owner: string): Promise<StoredTimer[]> {
    this.calls.timersOf++;
    return this.inner.timersOf(owner);
  }
  claimTimer(id: string, from: string, to: string): Promise<boolean> {
    this.calls.claimTimer++;
    return this.inner.claimTimer(id, from, to);
  }
}

/** A Replicator whose reported errors are collected (a test expecting none asserts the list is empty). */
function replicator(store: SessionStore, nodeId: string): Replicator & { errors: unknown[] } {
  const r = new Replicator(store, 'ConfirmedDialog', nodeId) as Replicator & { errors: unknown[] };
  r.errors = [];
  r.onError = (err) => r.errors.push(err);
  return r;
}

let stackA: SipStack;
let stackB: SipStack;
let stackC: SipStack;
before(async () => {
  const listen = [{ protocol: 'UDP' as const, host: '127.0.0.1', port: 0 }];
  stackA = await SipStack.start({ listen });
  stackB = await SipStack.start({ listen });
  stackC = await SipStack.start({ listen });
});
after(async () => {
  for (const s of [stackA, stackB, stackC]) await s?.close();
});

const managers: SessionManager[] = [];
function manager(): SessionManager {
  const m = new SessionManager();
  managers.push(m);
  return m;
}
after(() => {
  for (const m of managers) m.clear();
});

/** A confirmed UAS dialog written by hand, every field away from its default. */
function uasDialogRecord(localTag: string): DialogRecord {
  return {
    role: 'uas',
    state: 'confirmed',
    callId: 'a84b4c76e66710@pc33.atlanta.com',
    localTag,
    remoteTag: '1928301774',
    localSeq: 7,
    remoteSeq: 314160,
    localUri: '<sip:bob@biloxi.com>;tag=' + localTag,
    remoteUri: '"Alice Liddell" <sip:alice@atlanta.com>;tag=1928301774',
    remoteTarget: 'sip:alice@pc33.atlanta.com;transport=tcp',
    routeSet: ['<sip:p1.example.com;lr>', '<sip:p2.example.net;lr;ftag=1928301774>'],
    secure: true,
    inviteSeq: 314159,
  };
}

/** A B2BUA call: a UAS leg with a dialog, a UAC leg without one yet, linked both ways; attributes and a timer. */
function buildCall(m: SessionManager) {
  const s = m.create('b2bua');
  s.affinity = affinityKey('a84b4c76e66710@pc33.atlanta.com');
  s.setAttribute('caller', 'sip:alice@atlanta.com');
  s.setAttribute('plan', { tries: 3, targets: ['sip:bob@192.0.2.4', 'sip:bob@192.0.2.5'], nested: { ok: true, none: null, pi: 3.25 } });
  const uas = s.createSession();
  uas.role = 'uas';
  const rec = uasDialogRecord(uas.id);
  uas.dialog = Dialog.fromJSON(rec);
  uas.setAttribute('side', 'caller');
  const uac = s.createSession();
  uac.role = 'uac';
  uac.setAttribute('side', 'callee');
  uac.setAttribute('attempt', 2);
  uas.linked = uac;
  uac.linked = uas;
  const timerId = `${s.id}.tHANG`;
  s.timers.set(timerId, { fireAt: Date.now() + 90_000, info: { action: 'hangup', after: [30, 60] } });
  return { s, uas, uac, rec, timerId };
}

/** What must survive a failover, compared field by field (independent of the Replicator's own record()). */
function snapshot(s: SipApplicationSession) {
  return {
    id: s.id,
    app: s.appName,
    affinity: s.affinity,
    attributes: s.attributes.toJSON(),
    timers: [...s.timers].map(([id, t]) => [id, t.fireAt, t.info]),
    legs: [...s.sessions.values()].map((l) => ({
      id: l.id,
      role: l.role,
      attributes: l.attributes.toJSON(),
      dialog: l.dialog === null ? null : l.dialog.toJSON(),
      linked: l.linked?.id ?? null,
    })),
  };
}

describe('Replicator: save and restore', () => {
  test('a restored call equals the saved one: ids, roles, attributes, linked legs, dialog fields, timers', async () => {
    const store = new CountingStore();
    const a = replicator(store, 'node-a');
    const b = replicator(store, 'node-b');
    const call = buildCall(manager());
    await a.save(call.s);
    assert.deepEqual(a.errors, []);
    assert.equal(a.counters.writes, 1);
    assert.equal((await store.inner.get(call.s.id))?.version, 1);
    assert.ok(a.isReplicated(call.s));

    const mB = manager();
    const dialogsBefore = stackB.dialogs.size;
    const r = await b.restore(call.s.id, mB, stackB.dialogs);
    assert.ok(r !== null, 'restored');
    assert.deepEqual(b.errors, []);
    assert.equal(b.counters.failovers, 1);
    assert.notEqual(r, call.s);
    assert.deepEqual(snapshot(r), snapshot(call.s));
    assert.equal(r.id, call.s.id);
    assert.equal(r.appName, 'b2bua');
    assert.equal(parseAffinityKey(r.affinity), hashString('a84b4c76e66710@pc33.atlanta.com'));
    assert.deepEqual(r.getAttribute('plan'), { tries: 3, targets: ['sip:bob@192.0.2.4', 'sip:bob@192.0.2.5'], nested: { ok: true, none: null, pi: 3.25 } });

    // The legs, in order, with roles and attributes; linked points at the restored objects, not at copies.
    assert.deepEqual([...r.sessions.keys()], [call.uas.id, call.uac.id]);
    const rUas = r.sessions.get(call.uas.id)!;
    const rUac = r.sessions.get(call.uac.id)!;
    assert.equal(rUas.appSession, r);
    assert.equal(rUas.role, 'uas');
    assert.equal(rUac.role, 'uac');
    assert.equal(rUas.getAttribute('side'), 'caller');
    assert.equal(rUac.getAttribute('attempt'), 2);
    assert.equal(rUas.linked, rUac);
    assert.equal(rUac.linked, rUas);

    // The dialog: every field, registered in node B's dialog layer under its id, a copy of the original.
    assert.ok(rUas.dialog !== null);
    assert.deepEqual(rUas.dialog.toJSON(), call.rec);
    assert.equal(rUas.dialog.state, 'confirmed');
    assert.equal(rUas.state, 'confirmed');
    assert.equal(rUac.dialog, null);
    assert.equal(rUac.state, 'initial');
    const id = dialogId(call.rec.callId, call.rec.localTag, call.rec.remoteTag);
    assert.equal(stackB.dialogs.get(id), rUas.dialog);
    assert.equal(stackB.dialogs.size, dialogsBefore + 1);
    assert.notEqual(rUas.dialog, call.uas.dialog);
    // It continues the dialog: the next in-dialog request carries the restored CSeq, tags and route set.
    const bye = rUas.dialog.createRequest('BYE');
    assert.equal(bye.cseq.seq, 8);
    assert.equal(bye.callId, call.rec.callId);
    assert.deepEqual(bye.getAll('route'), call.rec.routeSet);
    assert.equal(bye.uriText, call.rec.remoteTarget);

    // Timers, with their info.
    assert.deepEqual([...r.timers.keys()], [call.timerId]);
    assert.deepEqual(r.timers.get(call.timerId), call.s.timers.get(call.timerId));

    // The manager finds it by its id and by a leg id.
    assert.equal(mB.find(call.s.id), r);
    assert.equal(mB.find(call.uac.id), r);
    assert.ok(b.isReplicated(r));
  });

  test('restore by a leg id; of a missing key null; of a call already held the same object without a read', async () => {
    const store = new CountingStore();
    const a = replicator(store, 'node-a');
    const b = replicator(store, 'node-b');
    const call = buildCall(manager());
    await a.save(call.s);

    const mB = manager();
    const r = await b.restore(call.uac.id, mB, stackB.dialogs);
    assert.ok(r !== null);
    assert.equal(r.id, call.s.id);
    assert.deepEqual(snapshot(r), snapshot(call.s));

    const reads = store.calls.get;
    assert.equal(await b.restore(call.uas.id, mB, stackB.dialogs), r);
    assert.equal(await b.restore(call.s.id, mB, stackB.dialogs), r);
    assert.equal(store.calls.get, reads, 'a call held here is not read again');
    assert.equal(b.counters.failovers, 1);

    assert.equal(await b.restore('nosuchcall', manager(), stackB.dialogs), null);
    assert.equal(await b.restore('nosuchcall.leg1', manager(), stackB.dialogs), null);
    assert.equal(b.counters.failovers, 1);
    assert.deepEqual(b.errors, []);
  });

  test('two requests of one call restoring it at once get one session, loaded once', async () => {
    const store = new CountingStore();
    const a = replicator(store, 'node-a');
    const b = replicator(store, 'node-b');
    const call = buildCall(manager());
    await a.save(call.s);
    const mB = manager();
    const created: SipApplicationSession[] = [];
    mB.onCreated = (s) => created.push(s);
    const [r1, r2] = await Promise.all([b.restore(call.uas.id, mB, stackC.dialogs), b.restore(call.uac.id, mB, stackC.dialogs)]);
    assert.ok(r1 !== null);
    assert.equal(r2, r1);
    assert.equal(created.length, 1);
    assert.equal(mB.size, 1);
    assert.equal(b.counters.failovers, 1);
  });

  test('a call with no timers, no attributes and no dialogs round-trips too', async () => {
    const store = new CountingStore();
    const a = replicator(store, 'node-a');
    const b = replicator(store, 'node-b');
    const s = manager().create('proxy');
    s.createSession().role = 'proxy';
    await a.save(s);
    const r = await b.restore(s.id, manager(), stackB.dialogs);
    assert.ok(r !== null);
    assert.deepEqual(snapshot(r), snapshot(s));
    assert.equal(r.timers.size, 0);
    assert.equal(r.affinity, null);
  });

  test('save writes only when the serialised record changed', async () => {
    const store = new CountingStore();
    const a = replicator(store, 'node-a');
    const call = buildCall(manager());
    await a.save(call.s);
    await a.save(call.s);
    assert.equal(a.counters.writes, 1);
    assert.equal(store.calls.put, 1);
    const firstBytes = a.counters.bytes;
    assert.ok(firstBytes > 0);

    // A value set again to what it was is no change either.
    call.s.setAttribute('caller', 'sip:alice@atlanta.com');
    await a.save(call.s);
    assert.equal(store.calls.put, 1);

    // Each kind of change is written once.
    const changes: Array<() => void> = [
      () => call.s.setAttribute('caller', 'sip:carol@chicago.com'),
      () => call.uac.setAttribute('attempt', 3),
      () => void call.uas.dialog!.createRequest('INFO'), // the dialog's local CSeq moves on
      () => { call.uac.role = 'proxy'; },
      () => { call.uac.linked = null; },
      () => call.s.timers.delete(call.timerId),
      () => call.s.createSession(),
    ];
    for (const [i, change] of changes.entries()) {
      change();
      await a.save(call.s);
      await a.save(call.s);
      assert.equal(store.calls.put, 2 + i, `change ${i}`);
      assert.equal(a.counters.writes, 2 + i);
      assert.equal((await store.inner.get(call.s.id))?.version, 2 + i);
    }
    assert.equal(a.counters.conflicts, 0);
    assert.deepEqual(a.errors, []);
  });

  test('a restored call saved without change costs no write', async () => {
    const store = new CountingStore();
    const a = replicator(store, 'node-a');
    const b = replicator(store, 'node-b');
    const call = buildCall(manager());
    await a.save(call.s);
    const r = (await b.restore(call.s.id, manager(), stackB.dialogs))!;
    await b.save(r);
    assert.equal(b.counters.writes, 0);
    assert.equal(store.calls.put, 1);
  });

  test('another node restores and saves after a change (versions follow); the stale writer gets a conflict it resolves', async () => {
    const store = new CountingStore();
    const a = replicator(store, 'node-a');
    const b = replicator(store, 'node-b');
    const call = buildCall(manager());
    await a.save(call.s);

    // Node B takes the call over and changes it: version 2.
    const r = (await b.restore(call.s.id, manager(), stackB.dialogs))!;
    r.setAttribute('servedBy', 'node-b');
    await b.save(r);
    assert.equal(b.counters.writes, 1);
    assert.equal(b.counters.conflicts, 0);
    let cur = (await store.inner.get(call.s.id))!;
    assert.equal(cur.version, 2);
    assert.deepEqual(JSON.parse(cur.data), Replicator.record(r));

    // Node A comes back, still at version 1, and changes its copy: its write conflicts, it takes version 2 and
    // writes version 3.
    call.s.setAttribute('servedBy', 'node-a');
    await a.save(call.s);
    assert.equal(a.counters.conflicts, 1);
    assert.equal(a.counters.writes, 2);
    assert.equal(a.counters.errors, 0);
    assert.deepEqual(a.errors, []);
    cur = (await store.inner.get(call.s.id))!;
    assert.equal(cur.version, 3);
    assert.deepEqual(JSON.parse(cur.data), Replicator.record(call.s));
    // Settled: no change, no write.
    await a.save(call.s);
    assert.equal(a.counters.writes, 2);

    // Now B is the stale one.
    r.setAttribute('servedBy', 'node-b again');
    await b.save(r);
    assert.equal(b.counters.conflicts, 1);
    assert.equal(b.counters.writes, 2);
    assert.deepEqual(b.errors, []);
    assert.equal((await store.inner.get(call.s.id))!.version, 4);
  });

  test('a conflict with a record already equal to ours is settled without a write', async () => {
    const store = new CountingStore();
    const a = replicator(store, 'node-a');
    const b = replicator(store, 'node-b');
    const call = buildCall(manager());
    await a.save(call.s);
    const r = (await b.restore(call.s.id, manager(), stackB.dialogs))!;
    // Both nodes make the same change; B writes it first.
    r.setAttribute('same', 1);
    call.s.setAttribute('same', 1);
    await b.save(r);
    const puts = store.calls.put;
    await a.save(call.s);
    assert.equal(a.counters.conflicts, 1);
    assert.equal(a.counters.writes, 1);
    assert.equal(store.calls.put, puts + 1, 'only the refused put');
    assert.equal((await store.inner.get(call.s.id))!.version, 2);
    await a.save(call.s);
    assert.equal(store.calls.put, puts + 1, 'A now holds version 2 as written');
  });

  test('saves of one call overlapping on one node all land; the last state is stored', async () => {
    const store = new CountingStore();
    const a = replicator(store, 'node-a');
    const call = buildCall(manager());
    const pending: Promise<void>[] = [];
    for (let i = 0; i < 5; i++) {
      call.s.setAttribute('step', i);
      pending.push(a.save(call.s));
    }
    await Promise.all(pending);
    assert.deepEqual(a.errors, []);
    assert.equal(a.counters.errors, 0);
    assert.equal(a.counters.conflicts, 0, 'one call\'s writes wait for each other: none races another');
    const cur = (await store.inner.get(call.s.id))!;
    assert.deepEqual(JSON.parse(cur.data), Replicator.record(call.s));
    const puts = store.calls.put;
    await a.save(call.s);
    assert.equal(store.calls.put, puts, 'nothing left to write');
    // And the next change is written at the stored version.
    call.s.setAttribute('after', true);
    await a.save(call.s);
    assert.equal(store.calls.put, puts + 1);
    assert.equal((await store.inner.get(call.s.id))!.version, cur.version + 1);
    assert.deepEqual(a.errors, []);
  });

  test('delete removes the record; the call is no longer replicated', async () => {
    const store = new CountingStore();
    const a = replicator(store, 'node-a');
    const call = buildCall(manager());
    await a.save(call.s);
    await a.delete(call.s);
    assert.equal(a.counters.deletes, 1);
    assert.equal(a.isReplicated(call.s), false);
    await a.flushDeletes();
    assert.equal(await store.inner.get(call.s.id), null);
    assert.equal(await replicator(store, 'node-b').restore(call.s.id, manager(), stackB.dialogs), null);
  });

  test('calls ending together are deleted with one store command, a few ms later', async () => {
    const store = new CountingStore();
    const a = replicator(store, 'node-a');
    const m = manager();
    const calls = Array.from({ length: 20 }, () => buildCall(m));
    for (const c of calls) await a.save(c.s);
    for (const c of calls) await a.delete(c.s);
    assert.equal(store.calls.deleteMany + store.calls.delete, 0, 'not yet');
    // The batch leaves on its own (an unref'd timer): wait for the records to go.
    const deadline = Date.now() + 2000;
    while (await store.inner.get(calls[19]!.s.id) !== null) {
      assert.ok(Date.now() < deadline, 'deleted within 2 s');
      await new Promise((r) => setImmediate(r));
    }
    assert.equal(store.calls.deleteMany, 1);
    for (const c of calls) assert.equal(await store.inner.get(c.s.id), null);
    assert.deepEqual(a.errors, []);
  });
});

describe('Replicator: persistent timers', () => {
  test('saveTimer stores the timer (owner, session, affinity key) and the record carrying it', async () => {
    const store = new CountingStore();
    const a = replicator(store, 'node-a');
    const call = buildCall(manager());
    const fireAt = call.s.timers.get(call.timerId)!.fireAt;
    // A call without a replica yet (ConfirmedDialog, still ringing): the timer alone is stored.
    await a.saveTimer(call.s, call.timerId, fireAt);
    assert.equal(await store.inner.get(call.s.id), null, 'no record before the call has a replica');
    await a.save(call.s);
    await a.saveTimer(call.s, call.timerId, fireAt);
    assert.deepEqual(await store.inner.timersOf('node-a'), [
      { id: call.timerId, session: call.s.id, owner: 'node-a', fireAt, key: parseAffinityKey(call.s.affinity)! },
    ]);
    const rec = JSON.parse((await store.inner.get(call.s.id))!.data);
    assert.deepEqual(rec.timers, [{ id: call.timerId, fireAt, info: { action: 'hangup', after: [30, 60] } }]);

    // Without an affinity key the session id's hash stands in.
    const plain = manager().create('uas');
    plain.createSession();
    plain.timers.set(`${plain.id}.t1`, { fireAt, info: null });
    await a.saveTimer(plain, `${plain.id}.t1`, fireAt);
    const stored = (await store.inner.timersOf('node-a')).find((t) => t.session === plain.id);
    assert.equal(stored?.key, hashString(plain.id));
    assert.deepEqual(a.errors, []);
  });

  test('takeTimer: true for the owner once, false for another node', async () => {
    const store = new CountingStore();
    const a = replicator(store, 'node-a');
    const b = replicator(store, 'node-b');
    const call = buildCall(manager());
    const fireAt = call.s.timers.get(call.timerId)!.fireAt;
    await a.save(call.s);
    await a.saveTimer(call.s, call.timerId, fireAt);
    assert.notEqual(await b.restore(call.s.id, manager(), stackB.dialogs), null);
    assert.equal(await b.takeTimer(call.timerId), false, 'node-b does not own it');
    assert.deepEqual((await store.inner.timersOf('node-a')).map((t) => t.id), [call.timerId]);
    call.s.timers.delete(call.timerId); // as the container does before taking it
    assert.equal(await a.takeTimer(call.timerId), true);
    assert.equal(await a.takeTimer(call.timerId), false, 'fired once');
    assert.deepEqual(await store.inner.timersOf('node-a'), []);
  });

  test('cancelTimer deletes the stored timer and saves the record', async () => {
    const store = new CountingStore();
    const a = replicator(store, 'node-a');
    const call = buildCall(manager());
    await a.save(call.s);
    await a.saveTimer(call.s, call.timerId, call.s.timers.get(call.timerId)!.fireAt);
    call.s.timers.delete(call.timerId);
    await a.cancelTimer(call.s, call.timerId);
    assert.deepEqual(await store.inner.timersOf('node-a'), []);
    assert.equal(JSON.parse((await store.inner.get(call.s.id))!.data).timers, undefined);
    assert.equal(await a.takeTimer(call.timerId), false);
  });

  /** 60 calls with one persistent timer each, owned by `dead`; affinity keys from fixed Call-IDs. */
  async function deadNodeTimers(store: SessionStore, dead: string, n = 60) {
    const d = replicator(store, dead);
    const m = manager();
    const timers = new Map<string, { session: string; key: number }>();
    for (let i = 0; i < n; i++) {
      const s = m.create('uas');
      s.affinity = affinityKey(`call-${i}@192.0.2.${i % 7}`);
      s.createSession().role = 'uas';
      const id = `${s.id}.t${i}`;
      const fireAt = Date.now() + 60_000 + i;
      s.timers.set(id, { fireAt, info: { i } });
      await d.save(s);
      await d.saveTimer(s, id, fireAt);
      timers.set(id, { session: s.id, key: parseAffinityKey(s.affinity)! });
    }
    assert.equal((await store.timersOf(dead)).length, n);
    return timers;
  }

  test('claimTimersOf: three survivors share 60 timers of a dead node, each claimed exactly once, fairly', async () => {
    const store = new CountingStore();
    const timers = await deadNodeTimers(store.inner, 'node-dead');
    const survivors = ['node-1', 'node-2', 'node-3'];
    const reps = survivors.map((id) => replicator(store, id));
    const claimed = await Promise.all(reps.map((r) => r.claimTimersOf('node-dead', survivors)));

    const all = claimed.flat().map((t) => t.id);
    assert.equal(all.length, timers.size, 'no timer claimed twice');
    assert.deepEqual(new Set(all), new Set(timers.keys()), 'every timer claimed');
    const nodes = survivors.map((id) => ({ id, seed: hashString(id) }));
    for (const [i, r] of reps.entries()) {
      assert.ok(claimed[i]!.length > 10, `${r.nodeId} got ${claimed[i]!.length} of 60: ${claimed.map((c) => c.length).join('/')}`);
      assert.equal(r.counters.timersTakenOver, claimed[i]!.length);
      assert.deepEqual(r.errors, []);
      for (const t of claimed[i]!) {
        assert.equal(t.session, timers.get(t.id)!.session);
        assert.equal(t.key, timers.get(t.id)!.key);
        // The same node a balancer picks for the call's affinity key.
        assert.equal(pickNode(nodes, t.key)!.id, r.nodeId, t.id);
      }
      // The owner index moved with them.
      assert.deepEqual((await store.inner.timersOf(r.nodeId)).map((t) => t.id).sort(), claimed[i]!.map((t) => t.id).sort());
    }
    assert.deepEqual(await store.inner.timersOf('node-dead'), []);

    // A second round finds nothing left.
    for (const r of reps) assert.deepEqual(await r.claimTimersOf('node-dead', survivors), []);
  });

  test('claimTimersOf: survivors that disagree on who survived still claim each timer once (CAS)', async () => {
    const store = new CountingStore();
    const timers = await deadNodeTimers(store.inner, 'node-dead');
    const reps = ['node-1', 'node-2', 'node-3'].map((id) => replicator(store, id));
    // Each believes it is the only survivor, so each tries to claim all 60.
    const claimed = await Promise.all(reps.map((r) => r.claimTimersOf('node-dead', [r.nodeId])));
    const all = claimed.flat().map((t) => t.id);
    assert.equal(all.length, timers.size);
    assert.deepEqual(new Set(all), new Set(timers.keys()));
    assert.equal(store.calls.claimTimer, 3 * timers.size);
    for (const [i, r] of reps.entries()) {
      assert.deepEqual((await store.inner.timersOf(r.nodeId)).map((t) => t.id).sort(), claimed[i]!.map((t) => t.id).sort());
    }
  });

  test('claimTimersOf: a node not among the survivors claims nothing; a claimed timer restores with its call', async () => {
    const store = new CountingStore();
    const timers = await deadNodeTimers(store.inner, 'node-dead', 12);
    const outsider = replicator(store, 'node-x');
    assert.deepEqual(await outsider.claimTimersOf('node-dead', ['node-1', 'node-2']), []);
    assert.equal((await store.inner.timersOf('node-dead')).length, 12);

    const only = replicator(store, 'node-1');
    const got = await only.claimTimersOf('node-dead', ['node-1']);
    assert.equal(got.length, 12);
    const t = got[0]!;
    const s = await only.restore(t.session, manager(), stackC.dialogs);
    assert.ok(s !== null);
    assert.ok(s.timers.has(t.id), 'the record carries the timer');
    assert.equal(s.timers.get(t.id)!.fireAt, t.fireAt);
    assert.equal(timers.get(t.id)!.session, s.id);
    // The new owner fires it, once.
    assert.equal(await only.takeTimer(t.id), true);
    assert.equal(await replicator(store, 'node-dead').takeTimer(t.id), false);
  });

  test('a store failure is counted and reported, never thrown', async () => {
    const broken = new CountingStore();
    const fail = (): Promise<never> => Promise.reject(new StoreError('STORE_UNAVAILABLE', 'down'));
    broken.put = fail;
    broken.timersOf = fail;
    const a = replicator(broken, 'node-a');
    const call = buildCall(manager());
    await a.save(call.s);
    assert.equal(a.counters.errors, 1);
    assert.equal(a.counters.writes, 0);
    assert.deepEqual(await a.claimTimersOf('node-dead', ['node-a']), []);
    assert.equal(a.counters.errors, 2);
    assert.equal(a.errors.length, 2);
  });
});

/** An INVITE as a node received it (the balancer's Via on top) or sent it (the node's Via on top). */
function invite(branch: string, via2 = ''): SipRequest {
  return parseMessage(Buffer.from(
    'INVITE sip:bob@biloxi.com SIP/2.0\r\n' +
    `Via: SIP/2.0/UDP 127.0.0.1:5060;branch=${branch}\r\n${via2}` +
    'Max-Forwards: 69\r\nFrom: <sip:alice@atlanta.com>;tag=88sja8x\r\nTo: <sip:bob@biloxi.com>\r\n' +
    'Call-ID: 987asjd97y7atg\r\nCSeq: 986759 INVITE\r\nContact: <sip:alice@pc33.atlanta.com>\r\nContent-Length: 0\r\n\r\n',
    'latin1',
  )) as SipRequest;
}

describe('Replicator: EarlyDialog records', () => {
  const source: Source = { protocol: 'UDP', host: '127.0.0.1', port: 5060, localHost: '127.0.0.2', localPort: 5080, connection: null };
  const dest: Destination = { protocol: 'UDP', host: '127.0.0.10', port: 5070 };

  test('a proxied INVITE: saved, found by its branch (as its CANCEL would), deleted', async () => {
    const store = new CountingStore();
    const a = new Replicator(store, 'EarlyDialog', 'node-a');
    const b = new Replicator(store, 'EarlyDialog', 'node-b');
    const inv = invite('z9hG4bKsfabc');
    const sent = invite('z9hG4bKnode1', 'Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsfabc\r\n');
    await a.saveEarly(inv, source, [{ request: sent, dest }]);
    const early = await b.loadEarly('z9hG4bKsfabc');
    assert.equal(early?.kind, 'proxy');
    if (early?.kind !== 'proxy') return;
    assert.equal(early.invite.toString(), inv.toString());
    assert.deepEqual({ ...early.source }, { protocol: 'UDP', host: '127.0.0.1', port: 5060, localHost: '', localPort: 0, connection: null });
    assert.equal(early.branches[0]!.request.topVia.branch, 'z9hG4bKnode1');
    assert.deepEqual(early.branches[0]!.dest, dest);
    assert.equal(await b.loadEarly('z9hG4bKother'), null);
    await b.deleteEarly('z9hG4bKsfabc');
    await b.flushDeletes();
    assert.equal(await a.loadEarly('z9hG4bKsfabc'), null);
  });

  test('a call this node answers: the session with its pending INVITEs, indexed by branch; a survivor rebuilds both', async () => {
    const store = new CountingStore();
    const a = new Replicator(store, 'EarlyDialog', 'node-a');
    const b = new Replicator(store, 'EarlyDialog', 'node-b');
    const call = buildCall(manager());
    const inbound = invite('z9hG4bKsfcaller');
    const outbound = invite('z9hG4bKlegb');
    call.uas.pendingInvite = { raw: inbound, source } as unknown as IncomingRequest;
    call.uac.outgoingInvite = { request: outbound, dest } as unknown as ClientTransaction;
    await a.saveEarlySession(call.s, 'z9hG4bKsfcaller');
    const early = await b.loadEarly('z9hG4bKsfcaller');
    assert.deepEqual(early, { kind: 'session', session: call.s.id });

    const rebuilt: Array<{ leg: string; invite: string | null; source: Source | null; outgoing: string | null; dest: Destination | null }> = [];
    const r = await b.restore(call.s.id, manager(), stackB.dialogs, (leg, p) => {
      rebuilt.push({
        leg: leg.id, invite: p.invite?.request.toString() ?? null, source: p.invite?.source ?? null,
        outgoing: p.outgoing?.request.toString() ?? null, dest: p.outgoing?.dest ?? null,
      });
    });
    assert.ok(r !== null);
    assert.deepEqual(rebuilt, [
      { leg: call.uas.id, invite: inbound.toString(), source: { protocol: 'UDP', host: '127.0.0.1', port: 5060, localHost: '', localPort: 0, connection: null }, outgoing: null, dest: null },
      { leg: call.uac.id, invite: null, source: null, outgoing: outbound.toString(), dest },
    ]);

    // Answered: the record no longer carries the INVITEs; a restore rebuilds nothing.
    call.uas.pendingInvite = null;
    call.uac.outgoingInvite = null;
    await a.save(call.s);
    const again: string[] = [];
    await b.restore(call.s.id, manager(), stackC.dialogs, (leg) => again.push(leg.id));
    assert.deepEqual(again, []);
  });
});
