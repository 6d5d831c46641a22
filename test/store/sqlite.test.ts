import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { openStores, StoreError } from '../../src/store/index.ts';
import { openSqliteStores } from '../../src/store/sqlite.ts';
import { locationContract } from './contract.ts';
import { binding, waitFor } from './helpers.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'sipfleet-store-sqlite-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const newFile = (): string => path.join(dir, `loc-${++files}.db`);

locationContract('sqlite (file)', async (options) => openStores(`sqlite:${newFile()}`, options));
locationContract('sqlite (:memory:)', async (options) => openStores('sqlite::memory:', options));

describe('sqlite: one file shared by several stores and processes', () => {
  test('the file is in WAL mode and records its schema version', async () => {
    const file = newFile();
    const stores = openSqliteStores(file, { purgeIntervalMs: 0, operationTimeoutMs: 1234 });
    const db = new Database(file, { readonly: true });
    try {
      assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
      assert.equal(db.prepare('SELECT version FROM sipfleet_schema').pluck().get(), 2);
    } finally {
      db.close();
      await stores.close();
    }
  });

  test('two stores on one file see each other’s writes', async () => {
    const file = newFile();
    const a = await openStores(`sqlite:${file}`, { purgeIntervalMs: 0 });
    const b = await openStores(`sqlite:${file}`, { purgeIntervalMs: 0 });
    try {
      const fromA = binding({ contact: 'sip:alice@192.0.2.1', nodeId: 'a' });
      await a.location.put(fromA);
      assert.deepEqual(await b.location.lookup(fromA.aor), [fromA]);
      await b.location.remove(fromA.aor, fromA.contact);
      assert.deepEqual(await a.location.lookup(fromA.aor), []);
      await b.credentials.set('bob', 'biloxi.com', 'zanzibar');
      assert.ok(await a.credentials.get('bob', 'biloxi.com'));
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('a child process writes while this one reads and writes the same file', async () => {
    const file = newFile();
    const aor = 'sip:shared@example.com';
    const n = 150;
    const parent = await openStores(`sqlite:${file}`, { purgeIntervalMs: 0 });
    const fixture = fileURLToPath(new URL('./fixtures/sqlite-writer.ts', import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', fixture, file, aor, String(n)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    try {
      const seen = new Set<number>();
      let mine = 0;
      let running = true;
      void exited.then(() => (running = false));
      while (running) {
        const childCount = (await parent.location.lookup(aor)).filter((b) => b.contact.startsWith('sip:child-')).length;
        seen.add(childCount);
        if (mine < 100) await parent.location.put(binding({ aor, contact: `sip:parent-${mine++}@192.0.2.2` }));
        await new Promise((r) => setImmediate(r));
      }
      assert.equal(await exited, 0, `writer failed: ${err}`);
      assert.match(out, new RegExp(`done ${n}`));
      const all = await parent.location.lookup(aor);
      assert.equal(all.filter((b) => b.contact.startsWith('sip:child-')).length, n);
      assert.equal(all.filter((b) => b.contact.startsWith('sip:parent-')).length, mine);
      assert.ok([...seen].some((c) => c > 0 && c < n), `never saw the writer in progress (saw ${[...seen].join(',')})`);
    } finally {
      clearTimeout(killer);
      child.kill();
      await parent.close();
    }
  });
});

describe('sqlite: failures', () => {
  test('a file that cannot be opened is a StoreError naming it', async () => {
    await assert.rejects(openStores(`sqlite:${dir}/no/such/dir/loc.db`), (e: unknown) =>
      e instanceof StoreError && e.code === 'STORE_CONNECT' && e.message.includes('/no/such/dir/loc.db'));
  });

  test('a database written by a newer sipfleet is refused, not altered', async () => {
    const file = newFile();
    await (await openStores(`sqlite:${file}`)).close();
    const db = new Database(file);
    db.prepare('UPDATE sipfleet_schema SET version = 99').run();
    db.close();
    await assert.rejects(openStores(`sqlite:${file}`), (e: unknown) => e instanceof StoreError && e.code === 'STORE_SCHEMA' && /version 99/.test(e.message));
    const check = new Database(file, { readonly: true });
    assert.equal(check.prepare('SELECT version FROM sipfleet_schema').pluck().get(), 99);
    check.close();
  });

  test('a lock held past the busy timeout fails the operation with STORE_UNAVAILABLE', async () => {
    const file = newFile();
    const stores = await openStores(`sqlite:${file}`, { purgeIntervalMs: 0, operationTimeoutMs: 100 });
    const locker = new Database(file);
    locker.prepare('BEGIN IMMEDIATE').run();
    try {
      const t = Date.now();
      await assert.rejects(stores.location.put(binding()), (e: unknown) => e instanceof StoreError && e.code === 'STORE_UNAVAILABLE' && /locked|busy/i.test(e.message));
      assert.ok(Date.now() - t >= 90, 'waited for the busy timeout');
      await waitFor(async () => (await stores.location.count()) === 0, 'reads to work during the write lock (WAL)', 1000);
    } finally {
      locker.prepare('ROLLBACK').run();
      locker.close();
      await stores.close();
    }
  });
});
