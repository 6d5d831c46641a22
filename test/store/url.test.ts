import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openStores, StoreConfigError, StoreError } from '../../src/store/index.ts';
import { parseStoreUrl, redactStoreUrl } from '../../src/store/url.ts';

test('every documented form of the store setting parses', () => {
  assert.deepEqual(parseStoreUrl('memory:'), { kind: 'memory' });
  assert.deepEqual(parseStoreUrl('sqlite:/var/lib/sipfleet/location.db'), { kind: 'sqlite', path: '/var/lib/sipfleet/location.db' });
  assert.deepEqual(parseStoreUrl('sqlite:data/loc.db'), { kind: 'sqlite', path: 'data/loc.db' });
  assert.deepEqual(parseStoreUrl('sqlite:///abs/loc.db'), { kind: 'sqlite', path: '/abs/loc.db' });
  assert.deepEqual(parseStoreUrl('sqlite::memory:'), { kind: 'sqlite', path: ':memory:' });
  assert.deepEqual(parseStoreUrl('redis://127.0.0.1:6380/2'), {
    kind: 'redis', mode: 'standalone', node: { host: '127.0.0.1', port: 6380 }, db: 2, tls: false,
  });
  assert.deepEqual(parseStoreUrl('redis://cache.internal'), {
    kind: 'redis', mode: 'standalone', node: { host: 'cache.internal', port: 6379 }, db: 0, tls: false,
  });
  assert.deepEqual(parseStoreUrl('rediss://sip:p%40ss@[::1]:6390/'), {
    kind: 'redis', mode: 'standalone', node: { host: '::1', port: 6390 }, db: 0, tls: true, username: 'sip', password: 'p@ss',
  });
  assert.deepEqual(parseStoreUrl('redis://:secret@h:1/3'), {
    kind: 'redis', mode: 'standalone', node: { host: 'h', port: 1 }, db: 3, tls: false, password: 'secret',
  });
  assert.deepEqual(parseStoreUrl('redis+sentinel://s1:26379,s2,[fd00::3]:26380/mymaster'), {
    kind: 'redis', mode: 'sentinel', masterName: 'mymaster', db: 0,
    sentinels: [{ host: 's1', port: 26379 }, { host: 's2', port: 26379 }, { host: 'fd00::3', port: 26380 }],
  });
  assert.deepEqual(parseStoreUrl('redis+sentinel://s1/mymaster/4'), {
    kind: 'redis', mode: 'sentinel', masterName: 'mymaster', db: 4, sentinels: [{ host: 's1', port: 26379 }],
  });
  assert.deepEqual(parseStoreUrl('redis+cluster://n1:7000,n2:7001'), {
    kind: 'redis', mode: 'cluster', nodes: [{ host: 'n1', port: 7000 }, { host: 'n2', port: 7001 }],
  });
  assert.deepEqual(parseStoreUrl('postgres://postgres@127.0.0.1:5432/test'), {
    kind: 'postgres', connectionString: 'postgres://postgres@127.0.0.1:5432/test',
  });
  assert.equal(parseStoreUrl('postgresql:///sipfleet?host=/var/run/postgresql').kind, 'postgres');
  assert.equal(parseStoreUrl('REDIS://h:1').kind, 'redis', 'schemes are case-insensitive');
});

test('bad settings raise StoreConfigError naming the `store` key and the accepted forms', () => {
  const bad = [
    '', '   ', 'localhost:6379', 'mysql://root@localhost/db', 'memory:x', 'sqlite:', 'sqlite://',
    'redis://', 'redis://h:0', 'redis://h:99999', 'redis://h:port', 'redis://h/notanumber', 'redis://h/1/2',
    'redis://a:1,b:2', 'redis://h?tls=true', 'redis+sentinel://s1:26379', 'redis+sentinel://s1/m/x/y',
    'redis+cluster://n1:7000/3', 'postgres://h:notaport/db', 'redis://%zz:pw@h', 'redis+sentinel://s1/%zz',
  ];
  for (const url of bad) {
    assert.throws(() => parseStoreUrl(url), (e: unknown) => {
      assert.ok(e instanceof StoreConfigError, `${url}: ${String(e)}`);
      assert.ok(e instanceof StoreError && e.code === 'STORE_CONFIG');
      assert.equal(e.key, 'store');
      assert.match(e.message, /^store: /);
      assert.match(e.message, /redis\+sentinel:\/\/HOST:PORT,HOST:PORT\/MASTER/);
      return true;
    }, url);
  }
  assert.throws(() => parseStoreUrl(undefined), StoreConfigError);
});

test('openStores rejects a bad setting with StoreConfigError before connecting to anything', async () => {
  await assert.rejects(openStores('mongodb://localhost/sip'), (e: unknown) => e instanceof StoreConfigError && /unknown scheme "mongodb:"/.test(e.message));
  await assert.rejects(openStores('redis://h:1,h:2'), StoreConfigError);
});

test('passwords never appear in errors', () => {
  assert.equal(redactStoreUrl('redis://user:hunter2@h:1/0'), 'redis://user:***@h:1/0');
  assert.equal(redactStoreUrl('postgres://u:hunter2@db/x'), 'postgres://u:***@db/x');
  assert.equal(redactStoreUrl('redis://h:1'), 'redis://h:1');
  assert.throws(() => parseStoreUrl('redis://u:hunter2@h:1/x'), (e: unknown) => e instanceof StoreConfigError && !e.message.includes('hunter2'));
});
