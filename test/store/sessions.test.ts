/**
 * SessionStore (replicated call state and persistent timers): one contract suite run against every backend that
 * keeps sessions — memory, SQLite (a file, and two handles on one file as two processes would hold it) and the
 * machine's Redis (REDIS_URL, a key prefix per store under one prefix per run, deleted afterwards; one client,
 * and two clients as two nodes would hold it). PostgreSQL keeps none (`sessions: null`).
 *
 * Every `open` gives an empty, isolated store as two handles `a` and `b` (the same object where the backend has
 * only one); the tests write through one and read through the other, so a handle that only saw its own writes
 * would fail them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { Redis } from 'ioredis';
import pg from 'pg';
import { openStores, StoreError } from '../../src/store/index.ts';
import { openMemoryStores } from '../../src/store/memory.ts';
import type { SessionStore, StoredTimer } from '../../src/store/sessions.ts';
import type { Stores } from '../../src/store/options.ts';
import { PG_URL, REDIS_URL, runId, waitFor } from './helpers.ts';

const HOUR = 3_600_000;
/** A TTL short enough to wait out, long enough that a put followed at once by a get still sees the record. */
const SHORT_TTL = 300;

const isConflict = (e: unknown): boolean => e instanceof StoreError && e.code === 'STORE_CONFLICT';

interface Handles {
  a: SessionStore;
  b: SessionStore;
  close(): Promise<void>;
}
type OpenHandles = () => Promise<Handles>;

/** Both handles from one Stores bundle (one connection / one file handle). */
function single(stores: Stores): Handles {
  assert.ok(stores.sessions, 'this backend keeps sessions');
  return { a: stores.sessions, b: stores.sessions, close: () => stores.close() };
}

/** Two independent bundles on the same data (two processes / two nodes). */
function pair(x: Stores, y: Stores): Handles {
  assert.ok(x.sessions && y.sessions, 'this backend keeps sessions');
  return {
    a: x.sessions,
    b: y.sessions,
    close: async () => {
      await x.close();
      await y.close();
    },
  };
}

let timerSeq = 0;
function timer(over: Partial<StoredTimer> = {}): StoredTimer {
  timerSeq++;
  return { id: `sess${timerSeq}.t${timerSeq}`, session: `sess${timerSeq}`, owner: 'node-a', fireAt: Date.now() + 60_000, key: (timerSeq * 0x9e3779b1) >>> 0, ...over };
}

const byId = (ts: StoredTimer[]): StoredTimer[] => [...ts].sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));

function sessionContract(name: string, open: OpenHandles): void {
  describe(`${name}: SessionStore contract`, () => {
    const opened: Handles[] = [];
    const fresh = async (): Promise<Handles> => {
      const h = await open();
      opened.push(h);
      return h;
    };
    after(async () => {
      for (const h of opened) await h.close();
    });

    // ---- versioned records ----

    test('put with expected 0 creates the record at version 1; the other handle reads it', async () => {
      const { a, b } = await fresh();
      assert.equal(await a.put('call1', '{"v":1,"x":"first"}', 0, HOUR), 1);
      assert.deepEqual(await b.get('call1'), { data: '{"v":1,"x":"first"}', version: 1 });
      assert.deepEqual(await a.get('call1'), { data: '{"v":1,"x":"first"}', version: 1 });
    });

    test('get of a key never written is null; keys are independent', async () => {
      const { a, b } = await fresh();
      assert.equal(await a.get('nosuch'), null);
      await a.put('one', 'data-one', 0, HOUR);
      assert.equal(await b.get('two'), null);
      assert.equal(await b.put('two', 'data-two', 0, HOUR), 1);
      assert.deepEqual(await b.get('one'), { data: 'data-one', version: 1 });
      assert.deepEqual(await a.get('two'), { data: 'data-two', version: 1 });
    });

    test('the right expected version writes: version + 1 each time, the data replaced', async () => {
      const { a, b } = await fresh();
      assert.equal(await a.put('k', 'v1', 0, HOUR), 1);
      assert.equal(await b.put('k', 'v2', 1, HOUR), 2);
      assert.equal(await a.put('k', 'v3', 2, HOUR), 3);
      assert.deepEqual(await b.get('k'), { data: 'v3', version: 3 });
    });

    test('a wrong expected version rejects with STORE_CONFLICT and leaves the record as it was', async () => {
      const { a, b } = await fresh();
      await a.put('k', 'original', 0, HOUR);
      await a.put('k', 'second', 1, HOUR);
      for (const wrong of [0, 1, 3, 17]) {
        await assert.rejects(b.put('k', `overwrite-${wrong}`, wrong, HOUR), isConflict, `expected ${wrong}`);
      }
      assert.deepEqual(await a.get('k'), { data: 'second', version: 2 });
      // A key that does not exist accepts only 0.
      await assert.rejects(a.put('fresh', 'x', 1, HOUR), isConflict);
      assert.equal(await b.get('fresh'), null);
    });

    test('the data comes back byte for byte (large, unicode, JSON-looking, empty)', async () => {
      const { a, b } = await fresh();
      const big = JSON.stringify({ legs: Array.from({ length: 2000 }, (_, i) => ({ i, tag: `t${i}`, s: 'Jürgen ✆ "q" \\ \n' })) });
      const samples: Array<[string, string]> = [['big', big], ['uni', 'Zoë 🎉 \u0000 end'], ['json', '{"v":1}'], ['empty', '']];
      for (const [k, d] of samples) assert.equal(await a.put(k, d, 0, HOUR), 1);
      for (const [k, d] of samples) assert.deepEqual(await b.get(k), { data: d, version: 1 }, k);
    });

    test('delete removes the record (from the other handle too); the key can then be created again with 0', async () => {
      const { a, b } = await fresh();
      await a.put('gone', 'x', 0, HOUR);
      await a.put('gone', 'y', 1, HOUR);
      await a.put('kept', 'z', 0, HOUR);
      await b.delete('gone');
      assert.equal(await a.get('gone'), null);
      assert.deepEqual(await a.get('kept'), { data: 'z', version: 1 });
      await assert.rejects(a.put('gone', 'stale', 2, HOUR), isConflict, 'a writer holding the old version does not resurrect it');
      assert.equal(await a.get('gone'), null);
      assert.equal(await a.put('gone', 'again', 0, HOUR), 1);
      assert.deepEqual(await b.get('gone'), { data: 'again', version: 1 });
      await b.delete('never-there'); // resolves
    });

    test('deleteMany removes every key given (absent ones too), leaves the others; a bad key writes nothing', async () => {
      const { a, b } = await fresh();
      for (let i = 0; i < 30; i++) await a.put(`many.${i}`, `d${i}`, 0, HOUR);
      await b.deleteMany([...Array.from({ length: 20 }, (_, i) => `many.${i}`), 'never-there']);
      for (let i = 0; i < 30; i++) assert.equal((await a.get(`many.${i}`)) === null, i < 20, `many.${i}`);
      await b.deleteMany([]);
      await assert.rejects(b.deleteMany(['many.20', 'bad key']), (err: unknown) => (err as { code?: string }).code === 'STORE_INVALID');
      assert.deepEqual(await a.get('many.20'), { data: 'd20', version: 1 }, 'nothing deleted when one key is bad');
    });

    test('a record past its TTL reads as null, refuses its old version, and is created again with expected 0', async () => {
      const { a, b } = await fresh();
      assert.equal(await a.put('short', 'brief', 0, SHORT_TTL), 1);
      assert.equal(await a.put('short', 'brief2', 1, SHORT_TTL), 2);
      assert.deepEqual(await b.get('short'), { data: 'brief2', version: 2 });
      await waitFor(async () => (await b.get('short')) === null, 'the record to expire', SHORT_TTL + 3000);
      assert.equal(await a.get('short'), null);
      await assert.rejects(a.put('short', 'late', 2, HOUR), isConflict);
      assert.equal(await b.get('short'), null);
      assert.equal(await b.put('short', 'reborn', 0, HOUR), 1);
      assert.deepEqual(await a.get('short'), { data: 'reborn', version: 1 });
    });

    test('every write renews the TTL', async () => {
      const { a, b } = await fresh();
      await a.put('expiring', 'x', 0, SHORT_TTL);
      await a.put('renewed', 'x', 0, SHORT_TTL);
      assert.equal(await a.put('renewed', 'y', 1, HOUR), 2);
      await waitFor(async () => (await b.get('expiring')) === null, 'the unrenewed record to expire', SHORT_TTL + 3000);
      assert.deepEqual(await b.get('renewed'), { data: 'y', version: 2 });
    });

    test('bad keys throw and write nothing; every allowed character is accepted', async () => {
      const { a } = await fresh();
      const bad = ['', 'has space', 'a{b}', 'a:b', 'a/b', 'a\nb', 'a;b', 'ü', 'x'.repeat(129)];
      for (const k of bad) {
        await assert.rejects(async () => a.put(k, 'x', 0, HOUR), (e: unknown) => e instanceof Error, JSON.stringify(k));
      }
      const good = ["Az09.-~!*+'`%", 'x'.repeat(128), 'abc.def'];
      for (const k of good) {
        assert.equal(await a.put(k, `data ${k}`, 0, HOUR), 1, k);
        assert.deepEqual(await a.get(k), { data: `data ${k}`, version: 1 }, k);
      }
    });

    // StoreError's module says everything leaving src/store is a StoreError with a stable code, STORE_INVALID for
    // "a value handed to the store is malformed (caller bug)"; checkSessionKey throws a plain TypeError instead.
    test('a bad key is a StoreError STORE_INVALID, like every other malformed value', async () => {
      const { a } = await fresh();
      await assert.rejects(async () => a.put('has space', 'x', 0, HOUR), (e: unknown) => e instanceof StoreError && e.code === 'STORE_INVALID');
    });

    test('two writers with the same expected version: exactly one wins, the other gets STORE_CONFLICT', async () => {
      const { a, b } = await fresh();
      // Creating: both expect 0.
      const created = await Promise.allSettled([a.put('race', 'from-a', 0, HOUR), b.put('race', 'from-b', 0, HOUR)]);
      const won = created.filter((r) => r.status === 'fulfilled');
      const lost = created.filter((r) => r.status === 'rejected');
      assert.equal(won.length, 1, `winners: ${JSON.stringify(created)}`);
      assert.equal((won[0] as PromiseFulfilledResult<number>).value, 1);
      assert.ok(isConflict((lost[0] as PromiseRejectedResult).reason), String((lost[0] as PromiseRejectedResult).reason));
      const winnerData = created[0]!.status === 'fulfilled' ? 'from-a' : 'from-b';
      assert.deepEqual(await a.get('race'), { data: winnerData, version: 1 });
      // Updating: both expect 1.
      const updated = await Promise.allSettled([a.put('race', 'a2', 1, HOUR), b.put('race', 'b2', 1, HOUR)]);
      assert.equal(updated.filter((r) => r.status === 'fulfilled').length, 1, JSON.stringify(updated));
      assert.ok(updated.every((r) => r.status === 'fulfilled' ? r.value === 2 : isConflict(r.reason)));
      assert.deepEqual(await b.get('race'), { data: updated[0]!.status === 'fulfilled' ? 'a2' : 'b2', version: 2 });
    });

    test('many puts in one turn (one script call on Redis): each its own version; a wrong version conflicts alone', async () => {
      const { a, b } = await fresh();
      await a.put('batch-3', 'old', 0, HOUR);
      const keys = Array.from({ length: 70 }, (_, i) => `batch-${i}`); // more than one batch of 64
      const results = await Promise.allSettled(keys.map((k, i) => a.put(k, `data-${i}`, i === 3 ? 5 : 0, HOUR)));
      for (const [i, r] of results.entries()) {
        if (i === 3) assert.ok(r.status === 'rejected' && isConflict(r.reason), `key 3 must conflict: ${JSON.stringify(r)}`);
        else assert.deepEqual(r, { status: 'fulfilled', value: 1 }, `key ${i}`);
      }
      assert.deepEqual(await b.get('batch-3'), { data: 'old', version: 1 }, 'the conflicting put wrote nothing');
      assert.deepEqual(await b.get('batch-69'), { data: 'data-69', version: 1 });
      const again = await Promise.all(keys.filter((_, i) => i !== 3).map((k) => a.put(k, 'next', 1, HOUR)));
      assert.ok(again.every((v) => v === 2));
    });

    test('deletes and puts issued together (one command on Redis) all take effect; a delete alone still happens', async () => {
      const { a, b } = await fresh();
      await Promise.all(['mix-old-1', 'mix-old-2', 'mix-alone'].map((k) => a.put(k, 'x', 0, HOUR)));
      await Promise.all([a.deleteMany(['mix-old-1', 'mix-old-2']), a.put('mix-new', 'y', 0, HOUR)]);
      assert.equal(await b.get('mix-old-1'), null);
      assert.equal(await b.get('mix-old-2'), null);
      assert.deepEqual(await b.get('mix-new'), { data: 'y', version: 1 });
      await a.deleteMany(['mix-alone']);
      assert.equal(await b.get('mix-alone'), null);
    });

    test('read-modify-write loops on both handles lose no update', async () => {
      const { a, b } = await fresh();
      await a.put('counter', '0', 0, HOUR);
      const increment = async (s: SessionStore, times: number): Promise<void> => {
        for (let done = 0, tries = 0; done < times; tries++) {
          assert.ok(tries < 10_000, 'no progress');
          const cur = (await s.get('counter'))!;
          try {
            await s.put('counter', String(Number(cur.data) + 1), cur.version, HOUR);
            done++;
          } catch (e) {
            if (!isConflict(e)) throw e;
          }
        }
      };
      await Promise.all([increment(a, 25), increment(b, 25), increment(a, 25), increment(b, 25)]);
      assert.deepEqual(await a.get('counter'), { data: '100', version: 101 });
    });

    // ---- persistent timers ----

    test('putTimer / timersOf(owner) lists exactly that owner’s timers, every field as written', async () => {
      const { a, b } = await fresh();
      const t1 = timer({ owner: 'node-a', key: 0 });
      const t2 = timer({ owner: 'node-a', key: 0xffffffff, fireAt: Date.now() + 7 * 24 * HOUR });
      const t3 = timer({ owner: 'node-b' });
      for (const t of [t1, t2, t3]) await a.putTimer(t);
      assert.deepEqual(byId(await b.timersOf('node-a')), byId([t1, t2]));
      assert.deepEqual(await b.timersOf('node-b'), [t3]);
      assert.deepEqual(await a.timersOf('node-c'), []);
    });

    test('the store keeps its own copy of a timer', async () => {
      const { a, b } = await fresh();
      const t = timer({ owner: 'node-a' });
      const want = { ...t };
      await a.putTimer(t);
      t.owner = 'mutated';
      t.fireAt = 1;
      const [got] = await b.timersOf('node-a');
      assert.deepEqual(got, want);
      got!.owner = 'mutated';
      assert.deepEqual(await a.timersOf('node-a'), [want]);
    });

    test('putTimer again with the same id replaces it: the new owner lists it, the old one does not', async () => {
      const { a, b } = await fresh();
      const t = timer({ owner: 'node-a' });
      await a.putTimer(t);
      const moved = { ...t, owner: 'node-b', fireAt: t.fireAt + 1000 };
      await b.putTimer(moved);
      assert.deepEqual(await a.timersOf('node-a'), []);
      assert.deepEqual(await a.timersOf('node-b'), [moved]);
    });

    test('takeTimer: by its owner true once, then false; by another owner false (and it stays)', async () => {
      const { a, b } = await fresh();
      const t = timer({ owner: 'node-a' });
      const other = timer({ owner: 'node-a' });
      await a.putTimer(t);
      await a.putTimer(other);
      assert.equal(await b.takeTimer(t.id, 'node-b'), false);
      assert.deepEqual(byId(await a.timersOf('node-a')), byId([t, other]), 'a failed take leaves it');
      assert.equal(await b.takeTimer(t.id, 'node-a'), true);
      assert.equal(await a.takeTimer(t.id, 'node-a'), false);
      assert.equal(await b.takeTimer(t.id, 'node-a'), false);
      assert.deepEqual(await a.timersOf('node-a'), [other]);
      assert.equal(await a.takeTimer('never.t0', 'node-a'), false);
    });

    test('claimTimer(from, to): true once; a second claim is false; the owner index moves', async () => {
      const { a, b } = await fresh();
      const t = timer({ owner: 'dead' });
      const stays = timer({ owner: 'dead' });
      await a.putTimer(t);
      await a.putTimer(stays);
      assert.equal(await a.claimTimer(t.id, 'not-the-owner', 'node-x'), false);
      assert.equal(await b.claimTimer(t.id, 'dead', 'node-b'), true);
      assert.equal(await a.claimTimer(t.id, 'dead', 'node-c'), false);
      assert.deepEqual(await a.timersOf('node-b'), [{ ...t, owner: 'node-b' }]);
      assert.deepEqual(await b.timersOf('dead'), [stays]);
      assert.deepEqual(await a.timersOf('node-c'), []);
      // Now node-b owns it: only node-b can take it.
      assert.equal(await a.takeTimer(t.id, 'dead'), false);
      assert.equal(await a.takeTimer(t.id, 'node-b'), true);
      assert.deepEqual(await b.timersOf('node-b'), []);
      assert.equal(await a.claimTimer('never.t0', 'dead', 'node-b'), false);
      assert.deepEqual(await b.timersOf('node-b'), []);
    });

    test('two survivors claiming the same timer at once: exactly one gets it', async () => {
      const { a, b } = await fresh();
      const ts = Array.from({ length: 20 }, () => timer({ owner: 'dead' }));
      for (const t of ts) await a.putTimer(t);
      const results = await Promise.all(ts.flatMap((t) => [a.claimTimer(t.id, 'dead', 'node-a'), b.claimTimer(t.id, 'dead', 'node-b')]));
      for (let i = 0; i < ts.length; i++) assert.equal(Number(results[2 * i]) + Number(results[2 * i + 1]), 1, ts[i]!.id);
      const ofA = (await b.timersOf('node-a')).map((t) => t.id);
      const ofB = (await a.timersOf('node-b')).map((t) => t.id);
      assert.deepEqual(ofA.sort(), ts.filter((_, i) => results[2 * i]).map((t) => t.id).sort());
      assert.deepEqual(ofB.sort(), ts.filter((_, i) => results[2 * i + 1]).map((t) => t.id).sort());
      assert.deepEqual(await a.timersOf('dead'), []);
    });

    test('two handles taking the same timer at once: exactly one fires it', async () => {
      const { a, b } = await fresh();
      const ts = Array.from({ length: 20 }, () => timer({ owner: 'node-a' }));
      for (const t of ts) await b.putTimer(t);
      const results = await Promise.all(ts.flatMap((t) => [a.takeTimer(t.id, 'node-a'), b.takeTimer(t.id, 'node-a')]));
      for (let i = 0; i < ts.length; i++) assert.equal(Number(results[2 * i]) + Number(results[2 * i + 1]), 1, ts[i]!.id);
      assert.deepEqual(await a.timersOf('node-a'), []);
    });

    test('the owner taking and a survivor claiming the same timer at once: exactly one succeeds', async () => {
      const { a, b } = await fresh();
      const ts = Array.from({ length: 20 }, () => timer({ owner: 'slow' }));
      for (const t of ts) await a.putTimer(t);
      const results = await Promise.all(ts.flatMap((t) => [a.takeTimer(t.id, 'slow'), b.claimTimer(t.id, 'slow', 'survivor')]));
      for (let i = 0; i < ts.length; i++) assert.equal(Number(results[2 * i]) + Number(results[2 * i + 1]), 1, ts[i]!.id);
      assert.deepEqual((await a.timersOf('survivor')).map((t) => t.id).sort(), ts.filter((_, i) => results[2 * i + 1]).map((t) => t.id).sort());
      assert.deepEqual(await b.timersOf('slow'), []);
    });

    test('deleteTimer removes it whoever owns it; takes and claims of it are then false', async () => {
      const { a, b } = await fresh();
      const t = timer({ owner: 'node-a' });
      const other = timer({ owner: 'node-a' });
      await a.putTimer(t);
      await a.putTimer(other);
      await b.deleteTimer(t.id);
      assert.deepEqual(await a.timersOf('node-a'), [other]);
      assert.equal(await a.takeTimer(t.id, 'node-a'), false);
      assert.equal(await a.claimTimer(t.id, 'node-a', 'node-b'), false);
      assert.deepEqual(await a.timersOf('node-b'), []);
      await a.deleteTimer('never.t0'); // resolves
    });

    test('timers and records are separate: deleting a record keeps its timers', async () => {
      const { a, b } = await fresh();
      await a.put('withtimer', 'x', 0, HOUR);
      const t = timer({ session: 'withtimer', owner: 'node-a' });
      await a.putTimer(t);
      await b.delete('withtimer');
      assert.deepEqual(await b.timersOf('node-a'), [t]);
    });
  });
}

// ---- memory ----

sessionContract('memory', async () => single(openMemoryStores({ purgeIntervalMs: 0 })));

test('memory: openStores("memory:") keeps sessions', async () => {
  const stores = await openStores('memory:');
  try {
    assert.ok(stores.sessions);
    assert.equal(await stores.sessions.put('k', 'd', 0, HOUR), 1);
  } finally {
    await stores.close();
  }
});

// ---- SQLite ----

const dir = mkdtempSync(path.join(os.tmpdir(), 'sipfleet-store-sessions-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const newFile = (): string => path.join(dir, `sess-${++files}.db`);

sessionContract('sqlite (file)', async () => single(await openStores(`sqlite:${newFile()}`, { purgeIntervalMs: 0 })));
sessionContract('sqlite (two handles on one file)', async () => {
  const file = newFile();
  return pair(await openStores(`sqlite:${file}`, { purgeIntervalMs: 0 }), await openStores(`sqlite:${file}`, { purgeIntervalMs: 0 }));
});

describe('sqlite: session tables', () => {
  test('schema version 2 with sipfleet_sessions and sipfleet_timers; a record is one row', async () => {
    const file = newFile();
    const stores = await openStores(`sqlite:${file}`, { purgeIntervalMs: 0 });
    const db = new Database(file, { readonly: true });
    try {
      assert.equal(db.prepare('SELECT version FROM sipfleet_schema').pluck().get(), 2);
      const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all();
      assert.ok(tables.includes('sipfleet_sessions') && tables.includes('sipfleet_timers'), String(tables));
      const before = Date.now();
      await stores.sessions!.put('row', 'payload', 0, 60_000);
      await stores.sessions!.put('row', 'payload2', 1, 60_000);
      const row = db.prepare('SELECT key, data, version, expires_at FROM sipfleet_sessions').get() as { key: string; data: string; version: number; expires_at: number };
      assert.equal(row.key, 'row');
      assert.equal(row.data, 'payload2');
      assert.equal(row.version, 2);
      assert.ok(row.expires_at >= before + 60_000 && row.expires_at <= Date.now() + 60_000, `expires_at ${row.expires_at}`);
      await stores.sessions!.putTimer({ id: 'row.t1', session: 'row', owner: 'n1', fireAt: 1234567890123, key: 42 });
      assert.deepEqual({ ...(db.prepare('SELECT * FROM sipfleet_timers').get() as object) }, { id: 'row.t1', session: 'row', owner: 'n1', fire_at: 1234567890123, key: 42 });
    } finally {
      db.close();
      await stores.close();
    }
  });

  test('a version 1 database (bindings and credentials only) is upgraded in place, its data kept', async () => {
    const file = newFile();
    const v1 = new Database(file);
    v1.exec(`
      CREATE TABLE sipfleet_schema (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
      INSERT INTO sipfleet_schema VALUES (1, 1);
      CREATE TABLE sipfleet_bindings (aor TEXT NOT NULL, bkey TEXT NOT NULL, contact TEXT NOT NULL, call_id TEXT NOT NULL,
        cseq INTEGER NOT NULL, expires_at INTEGER NOT NULL, q REAL NOT NULL, path TEXT NOT NULL, instance_id TEXT, reg_id INTEGER,
        received TEXT, updated_at INTEGER NOT NULL, node_id TEXT, PRIMARY KEY (aor, bkey)) WITHOUT ROWID;
      CREATE TABLE sipfleet_credentials (username TEXT NOT NULL, realm TEXT NOT NULL, ha1_md5 TEXT, ha1_sha256 TEXT,
        PRIMARY KEY (username, realm)) WITHOUT ROWID;`);
    v1.close();
    const stores = await openStores(`sqlite:${file}`, { purgeIntervalMs: 0 });
    try {
      await stores.credentials.set('bob', 'biloxi.com', 'zanzibar');
      assert.equal(await stores.sessions!.put('up', 'graded', 0, HOUR), 1);
      await stores.sessions!.putTimer({ id: 'up.t1', session: 'up', owner: 'n', fireAt: Date.now() + 1000, key: 1 });
      assert.equal((await stores.sessions!.timersOf('n')).length, 1);
    } finally {
      await stores.close();
    }
    const check = new Database(file, { readonly: true });
    assert.equal(check.prepare('SELECT version FROM sipfleet_schema').pluck().get(), 2);
    check.close();
  });

  test('after close, session operations fail with STORE_CLOSED', async () => {
    const stores = await openStores(`sqlite:${newFile()}`, { purgeIntervalMs: 0 });
    const sessions = stores.sessions!;
    await stores.close();
    await assert.rejects(sessions.put('k', 'd', 0, HOUR), (e: unknown) => e instanceof StoreError && e.code === 'STORE_CLOSED');
    await assert.rejects(sessions.timersOf('n'), (e: unknown) => e instanceof StoreError && e.code === 'STORE_CLOSED');
  });
});

// ---- Redis ----

const RUN = `sipfleet-test:${runId()}:`;
let prefixes = 0;
const prefix = (): string => `${RUN}${++prefixes}:`;

const raw = new Redis(REDIS_URL, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
raw.on('error', () => {});

async function keysOfRun(): Promise<string[]> {
  const keys: string[] = [];
  for await (const batch of raw.scanStream({ match: `${RUN.replace(/[*?[\]\\]/g, '\\$&')}*`, count: 1000 })) keys.push(...(batch as string[]));
  return keys;
}

let redisError: Error | undefined;
raw.once('error', (err: Error) => (redisError ??= err));
before(async () => {
  await raw.connect().catch(() => {});
});
after(async () => {
  if (raw.status !== 'ready') return;
  const keys = await keysOfRun();
  if (keys.length > 0) await raw.del(...keys);
  assert.deepEqual(await keysOfRun(), [], 'test keys left behind');
  await raw.quit();
});

test(`Redis is reachable at ${REDIS_URL} (set SIPFLEET_TEST_REDIS_URL to use another)`, async () => {
  await raw.ping().catch((err: Error) => {
    throw new Error(`the Redis session tests need a Redis server at ${REDIS_URL} and none answered (${(redisError ?? err).message})`);
  });
});

sessionContract('redis', async () => single(await openStores(REDIS_URL, { purgeIntervalMs: 0, redisKeyPrefix: prefix() })));
sessionContract('redis (two clients)', async () => {
  const p = prefix();
  return pair(
    await openStores(REDIS_URL, { purgeIntervalMs: 0, redisKeyPrefix: p }),
    await openStores(REDIS_URL, { purgeIntervalMs: 0, redisKeyPrefix: p }),
  );
});

describe('redis: session data model', () => {
  test('a record is a hash (d, v) under PREFIX sess:KEY whose TTL each write sets', async () => {
    const p = prefix();
    const stores = await openStores(REDIS_URL, { purgeIntervalMs: 0, redisKeyPrefix: p });
    try {
      await stores.sessions!.put('call9', 'payload', 0, 60_000);
      const key = `${p}sess:call9`;
      assert.deepEqual({ ...(await raw.hgetall(key)) }, { d: 'payload', v: '1' });
      const ttl = await raw.pttl(key);
      assert.ok(ttl > 55_000 && ttl <= 60_000, `pttl ${ttl}`);
      await stores.sessions!.put('call9', 'payload2', 1, 600_000);
      assert.deepEqual({ ...(await raw.hgetall(key)) }, { d: 'payload2', v: '2' });
      assert.ok((await raw.pttl(key)) > 60_000, 'renewed');
      await stores.sessions!.delete('call9');
      assert.equal(await raw.exists(key), 0);
    } finally {
      await stores.close();
    }
  });

  test('batch window: a put after a quiet spell leaves at once; puts of later turns within the window share one script call', async () => {
    const p = prefix();
    const windowMs = 2000;
    const stores = await openStores(REDIS_URL, { purgeIntervalMs: 0, redisKeyPrefix: p, sessionBatchWindowMs: windowMs });
    const monitor = await raw.monitor();
    // The keys of each script call that writes ours (EVALSHA, or EVAL after a NOSCRIPT: the same keys again).
    const scriptCalls: string[][] = [];
    monitor.on('monitor', (_time: string, args: string[]) => {
      const keys = args.filter((a) => a.startsWith(`${p}sess:`));
      if (!/^eval(sha)?$/i.test(args[0] ?? '') || keys.length === 0) return;
      if (JSON.stringify(scriptCalls.at(-1)) !== JSON.stringify(keys)) scriptCalls.push(keys);
    });
    try {
      const s = stores.sessions!;
      const started = performance.now();
      assert.equal(await s.put('first', 'x', 0, HOUR), 1);
      const firstMs = performance.now() - started;
      assert.ok(firstMs < windowMs / 2, `the first put waited ${Math.round(firstMs)} ms: a put after a quiet spell must not wait for the window`);
      // Three puts, each after two reads answered on the same connection: the first read leaves in this turn, the
      // second after the batch would have (next turn), so its answer comes after that batch's. Without the window
      // each put would leave, and be answered, alone.
      const later: Array<Promise<number>> = [];
      for (const k of ['second', 'third', 'fourth']) {
        later.push(s.put(k, 'y', 0, HOUR));
        await s.get('first');
        await s.get('first');
      }
      assert.deepEqual(await Promise.all(later), [1, 1, 1]);
      await waitFor(() => scriptCalls.length >= 2, "the monitor to see two script calls");
      assert.deepEqual(scriptCalls, [['first'], ['second', 'third', 'fourth']].map((ks) => ks.map((k) => `${p}sess:${k}`)));
    } finally {
      monitor.disconnect();
      await stores.close();
    }
  });

  test('a timer is a hash; the owner index set follows takes and claims', async () => {
    const p = prefix();
    const stores = await openStores(REDIS_URL, { purgeIntervalMs: 0, redisKeyPrefix: p });
    const s = stores.sessions!;
    try {
      const fireAt = Date.now() + 60_000;
      await s.putTimer({ id: 'c1.t1', session: 'c1', owner: 'node a', fireAt, key: 7 });
      await s.putTimer({ id: 'c1.t2', session: 'c1', owner: 'node a', fireAt, key: 8 });
      assert.deepEqual({ ...(await raw.hgetall(`${p}timer:c1.t1`)) }, { session: 'c1', owner: 'node a', fireAt: String(fireAt), key: '7' });
      const ownerKey = (o: string): string => `${p}timers-of:${encodeURIComponent(o)}`;
      assert.deepEqual((await raw.smembers(ownerKey('node a'))).sort(), ['c1.t1', 'c1.t2']);
      assert.equal(await s.claimTimer('c1.t1', 'node a', 'node b'), true);
      assert.deepEqual(await raw.smembers(ownerKey('node a')), ['c1.t2']);
      assert.deepEqual(await raw.smembers(ownerKey('node b')), ['c1.t1']);
      assert.equal(await s.takeTimer('c1.t2', 'node a'), true);
      assert.equal(await raw.exists(`${p}timer:c1.t2`), 0);
      assert.equal(await raw.exists(ownerKey('node a')), 0);
    } finally {
      await stores.close();
    }
  });

  test('after close, session operations fail with STORE_CLOSED', async () => {
    const stores = await openStores(REDIS_URL, { purgeIntervalMs: 0, redisKeyPrefix: prefix() });
    const sessions = stores.sessions!;
    await stores.close();
    await assert.rejects(sessions.get('k'), (e: unknown) => e instanceof StoreError && e.code === 'STORE_CLOSED');
    await assert.rejects(sessions.claimTimer('x', 'a', 'b'), (e: unknown) => e instanceof StoreError && e.code === 'STORE_CLOSED');
  });
});

// ---- PostgreSQL ----

describe('postgres: keeps no sessions', () => {
  const schema = `sipfleet_test_${runId()}_sess`;
  const admin = new pg.Pool({ connectionString: PG_URL, max: 1, connectionTimeoutMillis: 3000 });
  admin.on('error', () => {});
  after(async () => {
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {});
    await admin.end();
  });

  test(`openStores(postgres) gives sessions: null (server at ${PG_URL})`, async () => {
    const stores = await openStores(PG_URL, { purgeIntervalMs: 0, pgSchema: schema });
    try {
      assert.equal(stores.sessions, null);
    } finally {
      await stores.close();
    }
  });
});
