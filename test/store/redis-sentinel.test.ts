/**
 * The Redis store behind Sentinel while the master changes: the client follows Sentinel's +switch-master whenever
 * it comes. The Sentinel is scripted (fake-sentinel.ts), so an announcement can be made at the very moment the
 * client is asking for the master, which a real failover hits only now and then (on a loaded machine); the data
 * nodes are private redis-servers. test/e2e/failover-redis.test.ts runs real failovers with a real Sentinel.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { openStores, type Stores } from '../../src/store/index.ts';
import { killAll } from '../helpers/proc.ts';
import { startFakeSentinel, type Address, type FakeSentinel } from './fake-sentinel.ts';
import { runId, waitFor } from './helpers.ts';
import { startRedis, type RedisServer } from './redis-servers.ts';

after(() => killAll());

const NAME = `sipfleet:test-${runId()}`;

/** Names of the connections a server has (CLIENT LIST), on a fresh connection that never retries. */
async function clientNames(port: number): Promise<string[]> {
  const c = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
  c.on('error', () => {});
  try {
    await c.connect();
    const list = String(await c.call('CLIENT', 'LIST'));
    return list.split('\n').map((l) => / name=(\S*)/.exec(l)?.[1] ?? '').filter((n) => n !== '');
  } finally {
    c.disconnect();
  }
}

const on = async (server: RedisServer): Promise<boolean> => (await clientNames(server.port).catch((): string[] => [])).includes(NAME);
const addr = (server: RedisServer): Address => ({ host: '127.0.0.1', port: server.port });

/** Holds a Sentinel answer until the client has seen the announcement (ioredis' detector drops its subscriptions). */
const settle = (fake: FakeSentinel): Promise<void> =>
  Promise.race([fake.noSubscriber(), new Promise<void>((r) => setTimeout(r, 300))]);

/** Two masters A and B, a scripted Sentinel naming A, and the store connected through it (to A). */
async function setUp(): Promise<{ a: RedisServer; b: RedisServer; fake: FakeSentinel; stores: Stores; done(): Promise<void> }> {
  const [a, b] = await Promise.all([startRedis(), startRedis()]);
  const fake = await startFakeSentinel('mymaster', { host: '127.0.0.1', port: a.port });
  const stores = await openStores(`redis+sentinel://127.0.0.1:${fake.port}/mymaster`, {
    clientName: NAME, purgeIntervalMs: 0, connectTimeoutMs: 2000, operationTimeoutMs: 1000, redisKeyPrefix: `sipfleet-test:${runId()}:`,
    onError: () => {}, // the outages here are the point
  });
  await stores.sessions!.put('before', 'x', 0, 60_000);
  assert.ok(await on(a), 'connected to A');
  await waitFor(() => fake.subscribers > 0, 'the store to subscribe to +switch-master');
  return {
    a, b, fake, stores,
    async done() {
      await stores.close();
      // Closing the store also closes its Sentinel connections (else they would keep the process alive).
      await waitFor(() => fake.connections === 0, 'the store\'s Sentinel connections to close');
      await fake.close();
      await a.stop();
      await b.stop();
    },
  };
}

/** The store works again, on B. */
async function onB(stores: Stores, a: RedisServer, b: RedisServer, what: string, timeoutMs: number): Promise<void> {
  await waitFor(async () => (await on(b)) && !(await on(a)), what, timeoutMs);
  await stores.sessions!.put('after', 'x', 0, 60_000);
  const check = new Redis({ port: b.port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null });
  try {
    await check.connect();
    assert.equal((await check.keys('sipfleet-test:*sess:after')).length, 1, 'the write went to B');
  } finally {
    check.disconnect();
  }
}

describe('redis: following a Sentinel failover', () => {
  test('+switch-master while connected (a manual failover: the old master still up): the client moves to the new master', async () => {
    const { a, b, fake, stores, done } = await setUp();
    try {
      fake.switchMaster(addr(b));
      await onB(stores, a, b, 'the store to leave A for B', 5000);
    } finally {
      await done();
    }
  });

  // The CI flake of failover-redis.test.ts: with ioredis' failoverDetector, an announcement that arrives while the
  // client asks Sentinel for the master aborts that attempt, and ioredis then ends the client for good.
  test('the master dies, and +switch-master comes while the client is asking Sentinel for the master: it reconnects, to the new master', async () => {
    const { a, b, fake, stores, done } = await setUp();
    try {
      let announced = false;
      fake.onResolve = async () => {
        fake.onResolve = null;
        fake.switchMaster(addr(b));
        announced = true;
        await settle(fake);
      };
      a.proc.kill('SIGKILL');
      await onB(stores, a, b, 'the store to reconnect, to B', 5000);
      assert.ok(announced, 'the switch was announced during a request for the master');
    } finally {
      await done();
    }
  });

  test('+switch-master while reconnecting, answered with the old master (still up): the client leaves it once connected', async () => {
    const { a, b, fake, stores, done } = await setUp();
    try {
      let stale = false;
      fake.onResolve = async () => {
        fake.onResolve = null;
        fake.switchMaster(addr(b));
        await settle(fake);
        stale = true;
        return addr(a); // asked just before the switch
      };
      // A drops its clients (as a Redis being reconfigured does): the store reconnects and asks Sentinel.
      const admin = new Redis({ port: a.port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null });
      try {
        await admin.connect();
        await admin.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
      } finally {
        admin.disconnect();
      }
      await onB(stores, a, b, 'the store to end up on B', 5000);
      assert.ok(stale, 'the client was told the old master after the announcement');
    } finally {
      await done();
    }
  });
});
