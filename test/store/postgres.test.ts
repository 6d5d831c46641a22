/**
 * PostgreSQL backend, against the machine's server (PG_URL: 127.0.0.1:5432, user postgres, trust auth,
 * database test on CI). Every store gets a schema named for this run, all dropped afterwards.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { openStores, StoreConfigError, StoreError } from '../../src/store/index.ts';
import { locationContract } from './contract.ts';
import { binding, PG_URL, runId } from './helpers.ts';
import { freePort } from '../helpers/ports.ts';

const RUN = `sipfleet_test_${runId()}`;
const schemas = new Set<string>();
const schema = (): string => {
  const s = `${RUN}_${schemas.size + 1}`;
  schemas.add(s);
  return s;
};

const admin = new pg.Pool({ connectionString: PG_URL, max: 2, connectionTimeoutMillis: 3000 });
admin.on('error', () => {});

async function runSchemas(): Promise<string[]> {
  const r = await admin.query<{ nspname: string }>('SELECT nspname FROM pg_namespace WHERE nspname LIKE $1', [`${RUN}%`]);
  return r.rows.map((x) => x.nspname);
}

let reachable = false;
before(async () => {
  reachable = await admin.query('SELECT 1').then(() => true, () => false);
});

after(async () => {
  if (reachable) {
    for (const s of await runSchemas()) await admin.query(`DROP SCHEMA "${s}" CASCADE`);
    assert.deepEqual(await runSchemas(), [], 'test schemas left behind');
  }
  await admin.end();
});

test(`PostgreSQL is reachable at ${PG_URL} (CI machines run it; set SIPFLEET_TEST_PG_URL to use another)`, async () => {
  await admin.query('SELECT 1').catch((err: Error) => {
    throw new Error(
      `the PostgreSQL tests need a server at ${PG_URL} (trust auth, database "test") and none answered ` +
        `(${err.message || (err as { code?: string }).code}). Start it: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`,
    );
  });
});

locationContract('postgres', (options) => openStores(PG_URL, { ...options, pgSchema: schema() }));

describe('postgres: schema and sharing', () => {
  test('nodes starting together create the schema once, and share it', async () => {
    const s = schema();
    const all = await Promise.all([1, 2, 3].map(() => openStores(PG_URL, { purgeIntervalMs: 0, pgSchema: s })));
    try {
      const b = binding();
      await all[0]!.location.put(b);
      assert.deepEqual(await all[2]!.location.lookup(b.aor), [b]);
      const v = await admin.query(`SELECT version FROM "${s}".sipfleet_schema`);
      assert.deepEqual(v.rows, [{ version: 1 }]);
    } finally {
      for (const st of all) await st.close();
    }
  });

  test('a schema written by a newer sipfleet is refused', async () => {
    const s = schema();
    await (await openStores(PG_URL, { pgSchema: s })).close();
    await admin.query(`UPDATE "${s}".sipfleet_schema SET version = 99`);
    await assert.rejects(openStores(PG_URL, { pgSchema: s }), (e: unknown) => e instanceof StoreError && e.code === 'STORE_SCHEMA');
  });

  test('a schema name that is not a plain identifier is refused', async () => {
    await assert.rejects(openStores(PG_URL, { pgSchema: 'x"; DROP TABLE y; --' }), (e: unknown) => e instanceof StoreError && e.code === 'STORE_INVALID');
  });
});

describe('postgres: connection failures', () => {
  test('nothing listening: StoreError within the connect bound', async () => {
    const port = await freePort('127.0.0.1', 'tcp');
    const t = Date.now();
    await assert.rejects(openStores(`postgres://postgres@127.0.0.1:${port}/test`, { connectTimeoutMs: 2000 }), (e: unknown) => {
      assert.ok(e instanceof StoreError && !(e instanceof StoreConfigError), String(e));
      assert.equal(e.code, 'STORE_CONNECT');
      assert.match(e.message, new RegExp(`cannot connect to PostgreSQL at 127\\.0\\.0\\.1:${port}/test: .*ECONNREFUSED`));
      return true;
    });
    assert.ok(Date.now() - t < 3000, `took ${Date.now() - t} ms`);
  });

  test('a server that accepts but never answers: StoreError within the connect bound', async () => {
    const net = await import('node:net');
    const sockets: import('node:net').Socket[] = [];
    const silent = net.createServer((s) => sockets.push(s)).listen(0, '127.0.0.1');
    await new Promise((r) => silent.once('listening', r));
    const port = (silent.address() as import('node:net').AddressInfo).port;
    try {
      const t = Date.now();
      await assert.rejects(openStores(`postgres://postgres@127.0.0.1:${port}/test`, { connectTimeoutMs: 500 }), (e: unknown) => e instanceof StoreError && e.code === 'STORE_CONNECT');
      assert.ok(Date.now() - t < 2500, `took ${Date.now() - t} ms`);
    } finally {
      for (const s of sockets) s.destroy();
      silent.close();
    }
  });

  test('an unknown database is a StoreError naming it, without the password', async () => {
    await assert.rejects(openStores(PG_URL.replace(/\/[^/]*$/, '/no_such_db_sipfleet').replace('postgres@', 'postgres:hunter2@')), (e: unknown) => {
      assert.ok(e instanceof StoreError && e.code === 'STORE_CONNECT', String(e));
      assert.match(e.message, /no_such_db_sipfleet/);
      assert.ok(!e.message.includes('hunter2'));
      return true;
    });
  });
});
