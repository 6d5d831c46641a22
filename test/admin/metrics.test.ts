import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { after, describe, test } from 'node:test';
import { AdminConfigError, startAdminServer } from '../../src/admin/server.ts';
import { startCluster } from '../e2e/sipfleet-cluster.ts';
import { freePort } from '../helpers/ports.ts';
import { killAll, spawnProcess } from '../helpers/proc.ts';
import { parsePrometheus, sumOf } from '../helpers/prometheus.ts';
import { runSipp, SCENARIO_UAC_RR } from '../helpers/sipp.ts';
import { CLI } from '../e2e/sipfleet-cluster.ts';
import { makeTempDir } from '../helpers/tmp.ts';

after(() => killAll());

async function scrape(url: string, token?: string) {
  const res = await fetch(`${url}/metrics`, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return parsePrometheus(await res.text());
}

describe('admin endpoint: access', () => {
  test('bound to loopback it is open; with a token, requests without it get 401, with it 200', async () => {
    const open = await startAdminServer('127.0.0.1', 0, { status: () => ({ ok: true }) });
    try {
      assert.equal((await fetch(`${open.url}/status`)).status, 200);
      const missing = await fetch(`${open.url}/nothing`);
      assert.equal(missing.status, 404);
      assert.match(((await missing.json()) as { error: string }).error, /GET \/status/);
    } finally {
      await open.close();
    }
    const token = 'a-long-enough-admin-token';
    const guarded = await startAdminServer('127.0.0.1', 0, { status: () => ({ ok: true }) }, { token });
    try {
      assert.equal((await fetch(`${guarded.url}/status`)).status, 401);
      assert.equal((await fetch(`${guarded.url}/status`, { headers: { authorization: 'Bearer wrong-token-of-same-size' } })).status, 401);
      assert.equal((await fetch(`${guarded.url}/status`, { headers: { authorization: `Bearer ${token}` } })).status, 200);
      assert.equal((await fetch(`${guarded.url}/status?token=${token}`)).status, 200, 'a browser passes it in the query');
    } finally {
      await guarded.close();
    }
  });

  test('a non-loopback address without a token is refused before anything binds', async () => {
    await assert.rejects(startAdminServer('0.0.0.0', 0, { status: () => ({}) }), (err: unknown) => {
      assert.ok(err instanceof AdminConfigError);
      assert.equal(err.key, 'admin');
      assert.match(err.message, /needs a token \(SIPFLEET_ADMIN_TOKEN\)/);
      return true;
    });
    await assert.rejects(startAdminServer('127.0.0.1', 0, {}, { token: 'short' }), /at least 16 characters/);
  });

  test('sipfleet balancer --admin 0.0.0.0:PORT without SIPFLEET_ADMIN_TOKEN exits 2, its SIP port never bound', async () => {
    const sipPort = await freePort('127.0.0.1');
    const env = { ...process.env };
    delete env.SIPFLEET_ADMIN_TOKEN;
    const p = spawnProcess(process.execPath, ['--import', 'tsx', CLI, 'balancer', '--listen', `127.0.0.1:${sipPort}`, '--admin', '0.0.0.0:0'], {
      env: { ...env, SIPFLEET_CLUSTER_SECRET: 'test-secret-test-secret' }, name: 'balancer bad admin',
    });
    const exit = await p.exited;
    assert.equal(exit.code, 2, p.stderr);
    assert.match(p.stderr, /admin: binding 0\.0\.0\.0 \(not loopback\) needs a token/);
    // Never bound: the port is still free for anyone.
    await new Promise<void>((resolve, reject) => {
      const s = net.createServer().once('error', reject).listen(sipPort, '127.0.0.1', () => s.close(() => resolve()));
    });
  });
});

describe('/metrics under SIPp load (sipfleet up --nodes 2, uas app, SQLite)', () => {
  test('parses as Prometheus text; balancer and node counters move with the calls', async () => {
    const cluster = await startCluster(['--nodes', '2', '--app', 'uas'], { SIPFLEET_ADMIN_TOKEN: '' });
    try {
      const before = await scrape(cluster.adminUrl);
      assert.equal(before.types.get('sipfleet_balancer_requests_total'), 'counter');
      assert.equal(sumOf(before.samples, 'sipfleet_node_up'), 2, 'two nodes up');
      const nodes = (await cluster.status()).nodes;
      assert.ok(nodes.every((n) => typeof n.admin === 'string'), 'every node announces its admin endpoint');
      const nodeBefore = await Promise.all(nodes.map((n) => scrape(n.admin!)));

      const calls = 200;
      const r = await runSipp({ sf: SCENARIO_UAC_RR, remote: cluster.sip, rate: 100, maxCalls: calls, callLimit: 200, timeoutSec: 30 });
      assert.equal(r.failed, 0, `${JSON.stringify(r.failures)}\n${existsSync(r.errorLogPath) ? readFileSync(r.errorLogPath, 'latin1').slice(0, 1000) : ''}\n${cluster.process.stdout.split('\n').filter((l) => !l.startsWith('[node')).join('\n')}`);
      assert.equal(r.successful, calls);

      const after = await scrape(cluster.adminUrl);
      assert.equal(sumOf(after.samples, 'sipfleet_node_new_calls_total') - sumOf(before.samples, 'sipfleet_node_new_calls_total'), calls);
      // INVITE, ACK, BYE of every call through the balancer (at least; retransmissions may add).
      assert.ok(sumOf(after.samples, 'sipfleet_balancer_requests_total') - sumOf(before.samples, 'sipfleet_balancer_requests_total') >= 3 * calls);
      assert.ok(sumOf(after.samples, 'sipfleet_node_heartbeat_age_seconds') >= 0);
      assert.ok(sumOf(after.samples, 'sipfleet_node_replication_lag_seconds') > 0, 'the nodes report how long their replicas take');
      assert.equal(sumOf(after.samples, 'sipfleet_node_replication_pending'), 0);
      const st = (await (await fetch(`${cluster.adminUrl}/status`)).json()) as { nodes: Array<{ callsPerSec: number; replication: { lagMs: number } }> };
      for (const n of st.nodes) {
        assert.equal(typeof n.callsPerSec, 'number');
        assert.ok(n.replication.lagMs > 0);
      }
      assert.ok(sumOf(after.samples, 'sipfleet_balancer_process_cpu_seconds_total') > 0, 'process metrics too');

      const nodeAfter = await Promise.all(nodes.map((n) => scrape(n.admin!)));
      const delta = (name: string, match: Record<string, string> = {}): number =>
        nodeAfter.reduce((a, m, i) => a + sumOf(m.samples, name, match) - sumOf(nodeBefore[i]!.samples, name, match), 0);
      assert.equal(delta('sipfleet_sip_requests_total', { direction: 'in', method: 'INVITE' }), calls);
      assert.equal(delta('sipfleet_sip_requests_total', { direction: 'in', method: 'BYE' }), calls);
      assert.ok(delta('sipfleet_sip_responses_total', { direction: 'out', method: 'INVITE', class: '2xx' }) >= calls);
      assert.ok(delta('sipfleet_sip_responses_total', { direction: 'out', method: 'INVITE', class: '1xx' }) >= calls);
      assert.ok(delta('sipfleet_sip_transactions_created_total', { kind: 'server' }) >= 2 * calls);
      // ConfirmedDialog on the embedded store: one record per call, each write timed.
      assert.equal(delta('sipfleet_replication_writes_total'), calls);
      assert.ok(delta('sipfleet_store_operation_seconds_count', { op: 'put', outcome: 'ok' }) >= calls);
      assert.equal(delta('sipfleet_calls', { phase: 'all' }), 0, 'every call ended');
      for (const m of nodeAfter) assert.equal(m.types.get('sipfleet_store_operation_seconds'), 'histogram');
    } finally {
      await cluster.stop();
    }
  });

  test('a node with --admin on loopback serves /metrics; the tmp data dir is its own', async () => {
    const port = await freePort('127.0.0.1');
    const adminPort = await freePort('127.0.0.1');
    const dir = makeTempDir('sipfleet-node-');
    const p = spawnProcess(process.execPath, ['--import', 'tsx', CLI, 'node', '--listen', `127.0.0.1:${port}`, '--app', 'uas', '--store', `sqlite:${dir}/n.db`, '--admin', `127.0.0.1:${adminPort}`], { name: 'node --admin' });
    try {
      await p.waitForOutput(/listening on/, 15_000, 'stdout');
      const m = await scrape(`http://127.0.0.1:${adminPort}`);
      assert.equal(m.types.get('sipfleet_sip_requests_total'), 'counter');
      assert.equal(m.types.get('sipfleet_sip_dialogs'), 'gauge');
      assert.equal(sumOf(m.samples, 'sipfleet_calls', { phase: 'all' }), 0);
    } finally {
      await p.stop(3000);
    }
  });
});
