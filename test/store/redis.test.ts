/**
 * Redis backend. The contract runs against the machine's Redis (REDIS_URL, 127.0.0.1:6379 on CI) under a key
 * prefix unique to this run, deleted afterwards; and against a private Sentinel and a private 3-node Cluster
 * started here. Outage tests use a private server too, so the shared one is never stopped.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { openStores, StoreConfigError, StoreError } from '../../src/store/index.ts';
import { locationContract } from './contract.ts';
import { binding, captureStderr, REDIS_URL, runId, waitFor } from './helpers.ts';
import { startCluster, startRedis, startSentinel } from './redis-servers.ts';
import { freePort } from '../helpers/ports.ts';

const RUN = `sipfleet-test:${runId()}:`;
let prefixes = 0;
const prefix = (): string => `${RUN}${++prefixes}:`;

/** A plain client on the shared server, for checking what the store wrote and for cleaning up. */
const raw = new Redis(REDIS_URL, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
raw.on('error', () => {}); // reported by the reachability test below

async function keysOfRun(): Promise<string[]> {
  const keys: string[] = [];
  for await (const batch of raw.scanStream({ match: `${RUN.replace(/[*?[\]\\]/g, '\\$&')}*`, count: 1000 })) keys.push(...(batch as string[]));
  return keys;
}

let connectError: Error | undefined;
raw.once('error', (err: Error) => (connectError ??= err));
before(async () => {
  // A failure is reported by the reachability test; every other test then fails with a StoreError of its own.
  await raw.connect().catch(() => {});
});

after(async () => {
  if (raw.status !== 'ready') return;
  const keys = await keysOfRun();
  if (keys.length > 0) await raw.del(...keys);
  assert.deepEqual(await keysOfRun(), [], 'test keys left behind');
  await raw.quit();
});

test(`Redis is reachable at ${REDIS_URL} (CI machines run it; set SIPFLEET_TEST_REDIS_URL to use another)`, async () => {
  await raw.ping().catch((err: Error) => {
    throw new Error(
      `the Redis tests need a Redis server at ${REDIS_URL} and none answered (${(connectError ?? err).message}). ` +
        `Start one: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no`,
    );
  });
});

locationContract('redis', (options) => openStores(REDIS_URL, { ...options, redisKeyPrefix: prefix() }));

describe('redis: data model', () => {
  test('one hash per AOR, in the {aor} hash slot, whose TTL follows the latest expiry', async () => {
    const p = prefix();
    const stores = await openStores(REDIS_URL, { purgeIntervalMs: 0, redisKeyPrefix: p });
    try {
      const now = Date.now();
      const short = binding({ contact: 'sip:alice@192.0.2.1', expiresAt: now + 60_000 });
      const long = binding({ contact: 'sip:alice@192.0.2.2', expiresAt: now + 600_000 });
      const key = `${p}loc:{${short.aor}}`;
      await stores.location.put(short);
      assert.equal(await raw.hlen(key), 1);
      const ttl1 = await raw.pexpiretime(key);
      assert.equal(ttl1, short.expiresAt);
      await stores.location.put(long);
      assert.equal(await raw.pexpiretime(key), long.expiresAt, 'a later binding extends the key');
      await stores.location.remove(long.aor, long.contact);
      assert.equal(await raw.pexpiretime(key), short.expiresAt, 'removing it shrinks the key back');
      await stores.location.put(binding({ aor: 'sip:gone@example.com', expiresAt: now - 1 }));
      assert.equal(await raw.exists(`${p}loc:{sip:gone@example.com}`), 0, 'an AOR with nothing live is not kept');
      await stores.credentials.set('bob', 'biloxi.com', 'zanzibar');
      assert.deepEqual(Object.keys(await raw.hgetall(`${p}cred:biloxi.com:bob`)).sort(), ['md5', 'sha256']);
    } finally {
      await stores.close();
    }
  });

  test('concurrent puts to one AOR from two clients lose no binding', async () => {
    const p = prefix();
    const a = await openStores(REDIS_URL, { purgeIntervalMs: 0, redisKeyPrefix: p });
    const b = await openStores(REDIS_URL, { purgeIntervalMs: 0, redisKeyPrefix: p });
    try {
      const aor = 'sip:busy@example.com';
      const writes: Promise<void>[] = [];
      for (let i = 0; i < 200; i++) {
        writes.push(a.location.put(binding({ aor, contact: `sip:a-${i}@192.0.2.1`, nodeId: 'a' })));
        writes.push(b.location.put(binding({ aor, contact: `sip:b-${i}@192.0.2.2`, nodeId: 'b' })));
      }
      await Promise.all(writes);
      const all = await a.location.lookup(aor);
      assert.equal(all.length, 400);
      assert.equal(all.filter((x) => x.nodeId === 'a').length, 200);
      assert.equal(await b.location.count(), 400);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe('redis: connection failures', () => {
  test('nothing listening: StoreError within the connect bound, and nothing printed by ioredis', async () => {
    const port = await freePort('127.0.0.1', 'tcp');
    let error: unknown;
    const t = Date.now();
    const stderr = await captureStderr(async () => {
      error = await openStores(`redis://127.0.0.1:${port}/0`, { connectTimeoutMs: 2000 }).then(
        () => null,
        (e: unknown) => e,
      );
    });
    assert.ok(Date.now() - t < 3000, `took ${Date.now() - t} ms`);
    assert.ok(error instanceof StoreError && !(error instanceof StoreConfigError), String(error));
    assert.equal(error.code, 'STORE_CONNECT');
    assert.match(error.message, new RegExp(`cannot connect to Redis at 127\\.0\\.0\\.1:${port} db 0: .*ECONNREFUSED`));
    assert.equal(stderr, '');
  });

  test('a server that accepts but never answers: StoreError within the connect bound', async () => {
    const net = await import('node:net');
    const sockets: import('node:net').Socket[] = [];
    const silent = net.createServer((s) => sockets.push(s)).listen(0, '127.0.0.1');
    await new Promise((r) => silent.once('listening', r));
    const port = (silent.address() as import('node:net').AddressInfo).port;
    try {
      const t = Date.now();
      await assert.rejects(openStores(`redis://127.0.0.1:${port}`, { connectTimeoutMs: 500 }), (e: unknown) => e instanceof StoreError && e.code === 'STORE_CONNECT');
      assert.ok(Date.now() - t < 2500, `took ${Date.now() - t} ms`);
    } finally {
      for (const s of sockets) s.destroy();
      silent.close();
    }
  });

  test('an outage is reported once, fails operations fast, and heals when Redis returns', async () => {
    const server = await startRedis();
    const errors: StoreError[] = [];
    const stores = await openStores(`redis://127.0.0.1:${server.port}`, {
      purgeIntervalMs: 0,
      operationTimeoutMs: 500,
      onError: (e) => errors.push(e),
    });
    try {
      await stores.location.put(binding());
      await server.stop();
      await waitFor(() => errors.length > 0, 'the outage to be reported', 5000);
      const t = Date.now();
      await assert.rejects(stores.location.lookup('sip:alice@example.com'), (e: unknown) => e instanceof StoreError && e.code === 'STORE_UNAVAILABLE');
      assert.ok(Date.now() - t < 3000, `a failing operation took ${Date.now() - t} ms`);
      const restarted = await startRedis([], server.port);
      try {
        // The new server is empty (nothing persisted); a put succeeding means the client reconnected.
        await waitFor(async () => stores.location.put(binding()).then(() => true, () => false), 'the store to reconnect', 10_000);
        assert.equal((await stores.location.lookup('sip:alice@example.com')).length, 1);
        assert.equal(errors.length, 1, `reported more than once: ${errors.map((e) => e.message).join(' | ')}`);
        assert.equal(errors[0]!.code, 'STORE_UNAVAILABLE');
      } finally {
        await stores.close();
        await restarted.stop();
      }
    } finally {
      await stores.close();
      await server.stop();
    }
  });
});

describe('redis: Sentinel and Cluster (private servers)', () => {
  let sentinel: Awaited<ReturnType<typeof startSentinel>> | undefined;
  let cluster: Awaited<ReturnType<typeof startCluster>> | undefined;
  before(async () => {
    sentinel = await startSentinel();
    cluster = await startCluster();
  });
  after(async () => {
    await sentinel?.stop();
    await cluster?.stop();
  });

  locationContract('redis+sentinel', (options) =>
    openStores(`redis+sentinel://127.0.0.1:${sentinel!.sentinel.port}/mymaster`, { ...options, redisKeyPrefix: prefix() }),
  );
  locationContract('redis+cluster', (options) =>
    openStores(`redis+cluster://${cluster!.nodes.map((n) => `127.0.0.1:${n.port}`).join(',')}`, { ...options, redisKeyPrefix: prefix() }),
  );

  test('cluster: count and purge cover AORs on every master', async () => {
    const ports = cluster!.nodes.map((n) => n.port);
    const admin = new Redis({ port: ports[0], lazyConnect: true });
    await admin.connect();
    // Pick AORs until every master owns some: which master owns an AOR is CRC16 of it, not something to assume.
    const slots = await admin.cluster('SLOTS');
    const owner = async (aor: string): Promise<number> => {
      const slot = (await admin.cluster('KEYSLOT', aor)) as number;
      return slots.find(([lo, hi]) => slot >= lo && slot <= hi)![2]![1];
    };
    const byMaster = new Map<number, string[]>(ports.map((p) => [p, []]));
    for (let i = 0; [...byMaster.values()].some((a) => a.length < 3); i++) {
      assert.ok(i < 1000, 'could not spread AORs over the masters');
      const aor = `sip:user${i}@example.com`;
      byMaster.get(await owner(aor))!.push(aor);
    }
    await admin.quit();
    const aors = [...byMaster.values()].flat();

    const p = prefix();
    const stores = await openStores(`redis+cluster://127.0.0.1:${ports[0]}`, { purgeIntervalMs: 0, redisKeyPrefix: p });
    try {
      const now = Date.now();
      for (const aor of aors) {
        await stores.location.put(binding({ aor, contact: 'sip:live@192.0.2.1' }));
        await stores.location.put(binding({ aor, contact: 'sip:dead@192.0.2.1', expiresAt: now - 1 }));
      }
      assert.equal(await stores.location.count(), aors.length);
      assert.equal(await stores.location.purgeExpired(), aors.length);
      for (const [port, owned] of byMaster) {
        const c = new Redis({ port, lazyConnect: true });
        await c.connect();
        const keys = (await c.keys(`${p}*`)).sort();
        await c.quit();
        assert.deepEqual(keys, owned.map((aor) => `${p}loc:{${aor}}`).sort(), `keys on master ${port}`);
      }
    } finally {
      await stores.close();
    }
  });

  test('sentinel: an unknown master name is a StoreError', async () => {
    await assert.rejects(
      openStores(`redis+sentinel://127.0.0.1:${sentinel!.sentinel.port}/nosuchmaster`, { connectTimeoutMs: 2000 }),
      (e: unknown) => e instanceof StoreError && e.code === 'STORE_CONNECT',
    );
  });
});
