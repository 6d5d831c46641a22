import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { ConfigError, loadUpConfig, nthAddress, readUpConfigFile, resolveUpConfig, UP_KEYS, type UpRaw } from '../../src/cli/config.ts';
import dgram from 'node:dgram';
import { spawnProcess } from '../helpers/proc.ts';
import { freePort } from '../helpers/ports.ts';
import { CLI } from '../e2e/sipfleet-cluster.ts';
import { makeTempDir } from '../helpers/tmp.ts';
import { makeCertificate } from '../helpers/tls.ts';

/** Asserts fn throws a ConfigError whose key is `key`; returns its message for further checks. */
function configError(fn: () => unknown, key: string, what = key): string {
  let message = '';
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ConfigError, `${what}: a ConfigError, got ${String(e)}`);
    assert.equal(e.key, key, `${what}: ${e.message}`);
    assert.ok(e.message.startsWith(`${key}: `), `the message names the key: ${e.message}`);
    message = e.message;
    return true;
  });
  return message;
}

describe('resolveUpConfig', () => {
  test('defaults', () => {
    assert.deepEqual(resolveUpConfig({}), {
      nodes: 3,
      app: ['proxy'],
      routeTo: undefined,
      listen: { host: '127.0.0.1', port: 5060 },
      transport: ['UDP'],
      store: undefined,
      replication: 'ConfirmedDialog',
      data: 'sipfleet-data',
      nodeAddress: '127.0.0.2',
      nodePort: 5060,
      internal: undefined,
      control: undefined,
      admin: undefined,
      deadAfterMs: 1000,
      heartbeatMs: 50,
      restartDelayMs: 1000,
      ringMs: undefined,
      callMs: undefined,
      options: {},
      logLevel: 'info',
      nodeFlags: [],
      edge: { listen: [], tls: null },
    });
  });

  test('values given', () => {
    const c = resolveUpConfig({
      nodes: '5', app: ['uas', './my-app.ts'], 'route-to': '127.0.0.10:5080', listen: '127.0.0.1:5070', transport: 'udp,tcp',
      store: 'redis://127.0.0.1:6379', replication: 'earlydialog', data: '/tmp/x', 'node-address': '127.0.1.2', 'node-port': '0',
      internal: '127.0.0.1:5071', control: '127.0.0.1:5072', admin: '127.0.0.1:0', 'dead-after-ms': '400', 'heartbeat-ms': '25',
      'restart-delay-ms': '0', 'ring-ms': '100', 'call-ms': '0', option: ['a=1', 'b=x=y', 'c='],
    });
    assert.equal(c.nodes, 5);
    assert.deepEqual(c.app, ['uas', './my-app.ts']);
    assert.equal(c.routeTo, '127.0.0.10:5080');
    assert.deepEqual(c.listen, { host: '127.0.0.1', port: 5070 });
    assert.deepEqual(c.transport, ['UDP', 'TCP']);
    assert.equal(c.store, 'redis://127.0.0.1:6379');
    assert.equal(c.replication, 'EarlyDialog');
    assert.equal(c.data, '/tmp/x');
    assert.equal(c.nodeAddress, '127.0.1.2');
    assert.equal(c.nodePort, 0);
    assert.deepEqual(c.internal, { host: '127.0.0.1', port: 5071 });
    assert.deepEqual(c.control, { host: '127.0.0.1', port: 5072 });
    assert.deepEqual(c.admin, { host: '127.0.0.1', port: 0 });
    assert.equal(c.deadAfterMs, 400);
    assert.equal(c.heartbeatMs, 25);
    assert.equal(c.restartDelayMs, 0);
    assert.equal(c.ringMs, 100);
    assert.equal(c.callMs, 0);
    assert.deepEqual(c.options, { a: '1', b: 'x=y', c: '' });
  });

  test('a single app or option (not a list) is taken as one; for other keys the last of several wins', () => {
    const c = resolveUpConfig({ app: 'b2bua', option: 'k=v', nodes: ['2', '4'] });
    assert.deepEqual(c.app, ['b2bua']);
    assert.deepEqual(c.options, { k: 'v' });
    assert.equal(c.nodes, 4);
  });

  test('the Java replication property is accepted', () => {
    assert.equal(resolveUpConfig({ replication: 'org.mobicents.ha.javax.sip.REPLICATION_STRATEGY=None' }).replication, 'None');
  });

  test('errors name the flag', () => {
    const bad: Array<[UpRaw, string]> = [
      [{ nodes: '0' }, '--nodes'],
      [{ nodes: 'x' }, '--nodes'],
      [{ nodes: '-1' }, '--nodes'],
      [{ nodes: '2.5' }, '--nodes'],
      [{ nodes: '' }, '--nodes'],
      [{ nodes: '201' }, '--nodes'],
      [{ 'node-address': 'example.com' }, '--node-address'],
      [{ 'node-address': '10.0.0.2' }, '--node-address'],
      [{ 'route-to': '127.0.0.1:99999' }, '--route-to'],
      [{ 'route-to': ':5060' }, '--route-to'],
      [{ listen: '127.0.0.1:port' }, '--listen'],
      [{ transport: 'sctp' }, '--transport'],
      [{ transport: 'udp,tls' }, '--transport'],
      [{ replication: 'Full' }, '--replication'],
      [{ 'node-port': 'x' }, '--node-port'],
      [{ internal: '[::1' }, '--internal'],
      [{ control: 'h:-1' }, '--control'],
      [{ admin: 'h:70000' }, '--admin'],
      [{ 'dead-after-ms': '0' }, '--dead-after-ms'],
      [{ 'heartbeat-ms': '0' }, '--heartbeat-ms'],
      [{ 'heartbeat-ms': '50ms' }, '--heartbeat-ms'],
      [{ 'restart-delay-ms': '-5' }, '--restart-delay-ms'],
      [{ 'ring-ms': 'soon' }, '--ring-ms'],
      [{ 'call-ms': '1.5' }, '--call-ms'],
      [{ option: ['ok=1', 'novalue'] }, '--option'],
      [{ option: '=v' }, '--option'],
    ];
    for (const [raw, key] of bad) configError(() => resolveUpConfig(raw), key, JSON.stringify(raw));
    assert.match(configError(() => resolveUpConfig({ nodes: '0' }), '--nodes'), /"0"/, 'the message quotes the value');
    assert.match(configError(() => resolveUpConfig({ nodes: 'x' }), '--nodes'), /"x"/);
    assert.match(configError(() => resolveUpConfig({ replication: 'Full' }), '--replication'), /ConfirmedDialog, EarlyDialog, None/);
  });

  test('a node address outside 127/8 is fine for a single node', () => {
    assert.equal(resolveUpConfig({ nodes: '1', 'node-address': '192.0.2.10' }).nodeAddress, '192.0.2.10');
  });

  test('errors use the names the caller gives (a file\'s key)', () => {
    configError(() => resolveUpConfig({ nodes: 'many' }, (k) => `up.yaml: ${k}`), 'up.yaml: nodes');
    configError(() => resolveUpConfig({ 'dead-after-ms': '0' }, (k) => `up.yaml: ${k}`), 'up.yaml: dead-after-ms');
  });
});

describe('readUpConfigFile (YAML)', () => {
  const dir = makeTempDir('config-test');
  let n = 0;
  const write = (text: string): string => {
    const file = path.join(dir, `up-${++n}.yaml`);
    writeFileSync(file, text);
    return file;
  };

  test('a valid file gives the flags\' shape: numbers as text, app list, option mapping as K=V', () => {
    const file = write([
      '# a cluster for tests',
      'nodes: 4',
      'app:',
      '  - uas',
      '  - ./apps/custom.ts',
      'route-to: 127.0.0.10:5080',
      'listen: "127.0.0.1:5070"',
      'transport: udp,tcp',
      'replication: EarlyDialog',
      'node-address: 127.0.0.20',
      'node-port: 0',
      'dead-after-ms: 300',
      'option:',
      '  greeting: hello world',
      '  max: 10',
      '  flag: true',
      '  url: "sip:a@b;x=y"',
      '',
    ].join('\n'));
    const raw = readUpConfigFile(file);
    assert.deepEqual(raw, {
      nodes: '4',
      app: ['uas', './apps/custom.ts'],
      'route-to': '127.0.0.10:5080',
      listen: '127.0.0.1:5070',
      transport: 'udp,tcp',
      replication: 'EarlyDialog',
      'node-address': '127.0.0.20',
      'node-port': '0',
      'dead-after-ms': '300',
      option: ['greeting=hello world', 'max=10', 'flag=true', 'url=sip:a@b;x=y'],
    });
    const c = resolveUpConfig(raw);
    assert.equal(c.nodes, 4);
    assert.deepEqual(c.options, { greeting: 'hello world', max: '10', flag: 'true', url: 'sip:a@b;x=y' });
    assert.equal(c.replication, 'EarlyDialog');
    assert.deepEqual(c.listen, { host: '127.0.0.1', port: 5070 });
  });

  test('a single app as a scalar; an empty file is no keys', () => {
    assert.deepEqual(readUpConfigFile(write('app: b2bua\n')), { app: ['b2bua'] });
    assert.deepEqual(readUpConfigFile(write('')), {});
    assert.deepEqual(readUpConfigFile(write('# only a comment\n')), {});
  });

  test('every known key is accepted', () => {
    const lines = UP_KEYS.map((k) => (k === 'option' ? 'option:\n  k: v' : k === 'app' ? 'app: uas' : `${k}: "1"`));
    const raw = readUpConfigFile(write(lines.join('\n') + '\n'));
    assert.deepEqual(Object.keys(raw).sort(), [...UP_KEYS].sort());
  });

  test('an unknown key: the error names the file and the key', () => {
    const file = write('nodes: 2\nnodez: 3\n');
    const msg = configError(() => readUpConfigFile(file), `${file}: nodez`);
    assert.ok(msg.includes(file) && msg.includes('nodez'), msg);
    assert.match(msg, /unknown key/);
    // Flags are not YAML keys under another spelling.
    for (const key of ['route_to', 'Nodes', '--nodes', 'config']) {
      const f = write(`${key}: 2\n`);
      configError(() => readUpConfigFile(f), `${f}: ${key}`);
    }
  });

  test('a value of the wrong type: the error names the key', () => {
    const cases: Array<[string, string]> = [
      ['nodes:\n  - 1\n  - 2\n', 'nodes'],
      ['listen:\n  host: 127.0.0.1\n  port: 5060\n', 'listen'],
      ['dead-after-ms:\n', 'dead-after-ms'],
      ['app:\n  - uas\n  - [3]\n', 'app'],
      ['app:\n  name: uas\n', 'app'],
      ['option: a=1\n', 'option'],
      ['option:\n  - a=1\n', 'option'],
    ];
    for (const [text, key] of cases) {
      const file = write(text);
      const msg = configError(() => readUpConfigFile(file), `${file}: ${key}`, text);
      assert.match(msg, /expected/, msg);
    }
    const file = write('option:\n  nested:\n    x: 1\n');
    configError(() => readUpConfigFile(file), `${file}: option.nested`);
    // Scalars are read as written; the key's own check refuses a bad one, naming the file and key.
    const bool = write('nodes: true\n');
    configError(() => resolveUpConfig(readUpConfigFile(bool), (k) => `${bool}: ${k}`), `${bool}: nodes`);
  });

  test('a file that is not a mapping: the error names the file', () => {
    const file = write('- nodes\n- 3\n');
    configError(() => readUpConfigFile(file), file);
    const scalar = write('just text\n');
    configError(() => readUpConfigFile(scalar), scalar);
  });

  test('invalid YAML, or no file: the error names --config and the file', () => {
    for (const text of ['nodes: [1, 2\n', 'nodes: 2\n  app: uas\n bad: indent\n', 'a: "unterminated\n', 'nodes: 1\nnodes: 2\n']) {
      const file = write(text);
      const msg = configError(() => readUpConfigFile(file), '--config', JSON.stringify(text));
      assert.ok(msg.includes(file), msg);
      assert.ok(!msg.slice('--config: '.length).includes('\n'), `one line: ${msg}`);
    }
    const missing = path.join(dir, 'no-such-file.yaml');
    assert.ok(configError(() => readUpConfigFile(missing), '--config').includes(missing));
  });

  test('file values pass through resolveUpConfig; its errors can name the file\'s key', () => {
    const file = write('nodes: 0\n');
    const raw = readUpConfigFile(file);
    configError(() => resolveUpConfig(raw, (k) => `${file}: ${k}`), `${file}: nodes`);
  });
});

describe('nthAddress', () => {
  test('the n-th address after the base', () => {
    assert.equal(nthAddress('127.0.0.2', 0), '127.0.0.2');
    assert.equal(nthAddress('127.0.0.2', 1), '127.0.0.3');
    assert.equal(nthAddress('127.0.0.2', 2), '127.0.0.4');
    assert.equal(nthAddress('127.0.0.2', 199), '127.0.0.201');
  });

  test('carries over 255', () => {
    assert.equal(nthAddress('127.0.0.255', 1), '127.0.1.0');
    assert.equal(nthAddress('127.0.0.250', 10), '127.0.1.4');
    assert.equal(nthAddress('127.0.255.255', 1), '127.1.0.0');
    assert.equal(nthAddress('127.0.0.2', 254), '127.0.1.0');
    assert.equal(nthAddress('127.0.0.2', 256 + 3), '127.0.1.5');
    assert.equal(nthAddress('10.255.255.255', 1), '11.0.0.0');
  });

  test('addresses of a high first octet (bit 31 set) do not go negative', () => {
    assert.equal(nthAddress('192.168.0.255', 1), '192.168.1.0');
    assert.equal(nthAddress('255.255.255.254', 1), '255.255.255.255');
  });

  test('consecutive: n nodes get n distinct addresses, each one more than the last', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const a = nthAddress('127.0.0.200', i);
      assert.match(a, /^127\.0\.[01]\.\d{1,3}$/);
      const last = a.split('.').map(Number);
      assert.ok(last.every((o) => o >= 0 && o <= 255), a);
      seen.add(a);
    }
    assert.equal(seen.size, 200);
  });
});

describe('regressions found in review', () => {
  test('an option with no value in YAML is not passed to the app as the text "null"', {
  }, () => {
    const file = path.join(makeTempDir('config-null'), 'up.yaml');
    writeFileSync(file, 'option:\n  greeting:\n');
    let raw: UpRaw | undefined;
    try {
      raw = readUpConfigFile(file);
    } catch (err) {
      assert.ok(err instanceof ConfigError && err.key === `${file}: option.greeting`, String(err)); // refusing it is fine too
      return;
    }
    assert.notDeepEqual(raw.option, ['greeting=null']);
  });

  test('node addresses that are not consecutive loopback addresses are refused, naming --node-address', {
  }, () => {
    configError(() => resolveUpConfig({ nodes: '3', 'node-address': '127.0.0.999' }), '--node-address', '127.0.0.999');
    configError(() => resolveUpConfig({ nodes: '3', 'node-address': '127.255.255.254' }), '--node-address', '127.255.255.254 + 2 = 128.0.0.0');
  });
});

describe('Java stack properties (--sip-stack-properties)', () => {
  test('REPLICATION_STRATEGY is read from a .properties file; other keys are ignored; a bad value names the line', async () => {
    const { readStackProperties } = await import('../../src/cli/config.ts');
    const { makeTempDir } = await import('../helpers/tmp.ts');
    const dir = makeTempDir('props-');
    const good = path.join(dir, 'sip.properties');
    writeFileSync(good, '# Restcomm\njavax.sip.STACK_NAME=sipfleet\norg.mobicents.ha.javax.sip.REPLICATION_STRATEGY=EarlyDialog\n');
    assert.equal(readStackProperties(good), 'EarlyDialog');
    const none = path.join(dir, 'none.properties');
    writeFileSync(none, 'javax.sip.STACK_NAME=x\n');
    assert.equal(readStackProperties(none), undefined);
    const bad = path.join(dir, 'bad.properties');
    writeFileSync(bad, '\norg.mobicents.ha.javax.sip.REPLICATION_STRATEGY = Sometimes\n');
    assert.throws(() => readStackProperties(bad), (err: ConfigError) => err.key === `${bad}:2: org.mobicents.ha.javax.sip.REPLICATION_STRATEGY`);
    assert.throws(() => readStackProperties(path.join(dir, 'missing')), (err: ConfigError) => err.key === '--sip-stack-properties');
    const cfg = resolveUpConfig({ 'sip-stack-properties': good });
    assert.equal(cfg.replication, 'EarlyDialog');
  });
});

describe('edge keys (tls, ws, wss)', () => {
  test('TLS and WSS need a readable certificate and its key; the error names the key', () => {
    const cert = makeCertificate(['127.0.0.1']);
    const other = makeCertificate(['127.0.0.1']);
    const c = resolveUpConfig({ tls: '127.0.0.1:5061', wss: '127.0.0.1', ws: '127.0.0.1:8080', 'tls-cert': cert.certPath, 'tls-key': cert.keyPath });
    assert.deepEqual(c.edge.listen, [
      { protocol: 'TLS', host: '127.0.0.1', port: 5061 }, { protocol: 'WS', host: '127.0.0.1', port: 8080 }, { protocol: 'WSS', host: '127.0.0.1', port: 443 },
    ]);
    assert.ok(c.edge.tls !== null && Buffer.from(c.edge.tls.cert).equals(cert.cert));
    assert.deepEqual(resolveUpConfig({ ws: '127.0.0.1:8080' }).edge.tls, null, 'plain WS needs no certificate');
    assert.throws(() => resolveUpConfig({ tls: '127.0.0.1:5061', 'tls-key': cert.keyPath }), /--tls-cert: .*certificate/);
    assert.throws(() => resolveUpConfig({ wss: '127.0.0.1:8443', 'tls-cert': cert.certPath }), /--tls-key: /);
    assert.throws(() => resolveUpConfig({ tls: '127.0.0.1:5061', 'tls-cert': '/nonexistent.pem', 'tls-key': cert.keyPath }), /--tls-cert: cannot read \/nonexistent\.pem/);
    assert.throws(() => resolveUpConfig({ tls: '127.0.0.1:5061', 'tls-cert': cert.certPath, 'tls-key': other.keyPath }), /--tls-key: .*not a usable key and certificate/);
    assert.throws(() => resolveUpConfig({ tls: '127.0.0.1:5061', 'tls-cert': cert.certPath, 'tls-key': cert.keyPath, 'tls-max-version': 'TLSv1.1' }), /--tls-max-version: expected TLSv1\.2 or TLSv1\.3/);
    assert.throws(() => resolveUpConfig({ 'tls-cert': cert.certPath }), /--tls-cert: needs --tls or --wss/);
    assert.throws(() => resolveUpConfig({ tls: 'nowhere:port' }), /--tls: /);
  });
});

describe('loadUpConfig and sipfleet config check', () => {
  test('file, then environment (SIPFLEET_STORE), then flags; errors name where the value came from', () => {
    const dir = makeTempDir('sipfleet-conf-');
    const file = path.join(dir, 'fleet.yaml');
    writeFileSync(file, 'nodes: 2\nstore: sqlite:/tmp/a.db\nlog-level: debug\n');
    const fromFile = loadUpConfig(file, {}, {});
    assert.equal(fromFile.store, 'sqlite:/tmp/a.db');
    assert.equal(fromFile.logLevel, 'debug');
    assert.equal(loadUpConfig(file, {}, { SIPFLEET_STORE: 'redis://127.0.0.1:6379/3' }).store, 'redis://127.0.0.1:6379/3');
    assert.equal(loadUpConfig(file, { store: 'sqlite:/tmp/b.db' }, { SIPFLEET_STORE: 'redis://x' }).store, 'sqlite:/tmp/b.db');
    assert.throws(() => loadUpConfig(file, { 'log-level': 'loud' }, {}), (err: unknown) => err instanceof ConfigError && /^--log-level: expected one of fatal, error/.test(err.message));
    writeFileSync(file, 'log-level: loud\n');
    assert.throws(() => loadUpConfig(file, {}, {}), (err: unknown) => err instanceof ConfigError && err.message.startsWith(`${file}: log-level: expected one of`));
  });

  async function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
    const p = spawnProcess(process.execPath, ['--import', 'tsx', CLI, ...args], { name: `sipfleet ${args.join(' ')}`, env: { ...process.env, ...env } });
    const exit = await p.exited;
    return { code: exit.code, stdout: p.stdout, stderr: p.stderr };
  }

  test('node settings (timers, router, auth, switches) become each node\'s flags, checked first', () => {
    const dir = makeTempDir('sipfleet-conf-');
    const router = path.join(dir, 'router.yaml');
    writeFileSync(router, 'rules: []\n');
    assert.deepEqual(resolveUpConfig({ t1: '250', t2: '2000', 'replication-window-ms': '0', router, 'auth-realm': 'example.com', 'trace-sip': 'true', 'no-record-route': 'false', 'auth-invites': 'true' }).nodeFlags,
      ['--t1', '250', '--t2', '2000', '--replication-window-ms', '0', '--router', router, '--auth-realm', 'example.com', '--trace-sip', '--auth-invites']);
    assert.throws(() => resolveUpConfig({ 'replication-window-ms': '-5' }), /^ConfigError: --replication-window-ms: /);
    assert.throws(() => resolveUpConfig({ t1: '500', t2: '100' }), /--t2: must not be shorter than t1 \(500 ms\), got 100 ms/);
    assert.throws(() => resolveUpConfig({ router: path.join(dir, 'none.yaml') }), /--router: no file/);
    assert.throws(() => resolveUpConfig({ 'trace-sip': 'yes' }), /--trace-sip: expected true or false, got "yes"/);
    assert.throws(() => resolveUpConfig({ 'auth-invites': 'true' }), /--auth-invites: needs auth-realm/);
  });

  test('the store is checked before any node starts: scheme, a per-process store, postgres without replication None', () => {
    assert.throws(() => resolveUpConfig({ store: 'mongodb://x' }), /^ConfigError: --store: unknown scheme "mongodb:"/);
    assert.throws(() => resolveUpConfig({ store: 'memory:' }), /--store: memory: is one process's own store/);
    assert.throws(() => resolveUpConfig({ store: 'sqlite::memory:' }), /--store: sqlite::memory: is one process's own database/);
    assert.throws(() => resolveUpConfig({ store: 'postgres://postgres@127.0.0.1/test' }), /--replication: ConfirmedDialog needs a store that holds calls/);
    assert.equal(resolveUpConfig({ store: 'postgres://postgres@127.0.0.1/test', replication: 'None' }).store, 'postgres://postgres@127.0.0.1/test');
    assert.equal(resolveUpConfig({ store: 'redis://127.0.0.1:6379/2' }).store, 'redis://127.0.0.1:6379/2');
  });

  test('config check: a valid file prints the effective config; a wrong type or an unknown key exits 2 naming the key', async () => {
    const dir = makeTempDir('sipfleet-conf-');
    const good = path.join(dir, 'good.yaml');
    writeFileSync(good, 'nodes: 2\napp: [uas]\nlisten: 127.0.0.1:25070\n');
    const ok = await cli(['config', 'check', good]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /good\.yaml: ok/);
    assert.equal(JSON.parse(ok.stdout.slice(ok.stdout.indexOf('{'))).nodes, 2);
    const wrongType = path.join(dir, 'type.yaml');
    writeFileSync(wrongType, 'nodes: two\n');
    const t = await cli(['config', 'check', wrongType]);
    assert.equal(t.code, 2);
    assert.match(t.stderr, /type\.yaml: nodes: expected a positive integer, got "two"/);
    const unknown = path.join(dir, 'unknown.yaml');
    writeFileSync(unknown, 'nodes: 2\nnodez: 3\n');
    const u = await cli(['config', 'check', unknown]);
    assert.equal(u.code, 2);
    assert.match(u.stderr, /unknown\.yaml: nodez: unknown key/);
    // Secrets are not echoed: the store's password is masked, key and certificate contents are left out.
    const cert = makeCertificate(['127.0.0.1']);
    const secret = path.join(dir, 'secret.yaml');
    writeFileSync(secret, `store: redis://:pa55word-not-shown@127.0.0.1:6379/0\nwss: 127.0.0.1:28443\ntls-cert: ${cert.certPath}\ntls-key: ${cert.keyPath}\n`);
    const sc = await cli(['config', 'check', secret]);
    assert.equal(sc.code, 0, sc.stderr);
    assert.doesNotMatch(sc.stdout, /pa55word-not-shown/);
    assert.match(sc.stdout, /redis:\/\/:\*\*\*@127\.0\.0\.1:6379\/0/);
    assert.doesNotMatch(sc.stdout, /"data": \[|PRIVATE KEY/);
    assert.match(sc.stdout, /bytes from file, not shown/);
    const usage = await cli(['config', 'lint', good]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /usage: sipfleet config check FILE/);
  });

  test('sipfleet up --config with an unknown key exits 2 before binding any port', async () => {
    const dir = makeTempDir('sipfleet-conf-');
    const port = await freePort('127.0.0.1');
    const file = path.join(dir, 'bad.yaml');
    writeFileSync(file, `listen: 127.0.0.1:${port}\nnodes: 2\nbalancer-port: 7\n`);
    const r = await cli(['up', '--config', file, '--data', dir]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /bad\.yaml: balancer-port: unknown key/);
    // The SIP port (UDP) was never bound: it binds now.
    await new Promise<void>((resolve, reject) => {
      const sock = dgram.createSocket('udp4').once('error', reject);
      sock.bind(port, '127.0.0.1', () => sock.close(() => resolve()));
    });
  });
});
