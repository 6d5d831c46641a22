import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { freePort } from '../helpers/ports.ts';
import { killAll, spawnProcess } from '../helpers/proc.ts';
import { sipPing } from '../helpers/sip-ping.ts';
import { runSipp, SCENARIO_UAC_RR, SCENARIO_UAS_RR, startSipp, startSippUas, type SippTransport } from '../helpers/sipp.ts';
import { CLI, startCluster, waitUntil, type ClusterStatus } from './sipfleet-cluster.ts';

after(() => killAll());

const newCalls = (st: ClusterStatus): Record<string, number> => Object.fromEntries(st.nodes.map((n) => [n.id, n.traffic.newCalls]));

describe('sipfleet up: balancer and nodes', () => {
  for (const [transport, calls, rate] of [['udp', 3000, 250], ['tcp', 600, 150]] as Array<[SippTransport, number, number]>) {
    test(`${transport.toUpperCase()}: sipp uac → balancer → 3 proxy nodes → sipp uas: ${calls} calls, 0 failed, even spread, every message of a call on its node`, async () => {
      const uas = await startSippUas({ sf: SCENARIO_UAS_RR, localIp: '127.0.0.10', transport });
      const cluster = await startCluster(['--nodes', '3', '--app', 'proxy', '--transport', transport, '--route-to', `127.0.0.10:${uas.localPort}`]);
      try {
        const r = await runSipp({ sf: SCENARIO_UAC_RR, remote: cluster.sip, localIp: '127.0.0.1', transport, rate, maxCalls: calls, callLimit: 600, timeoutSec: 90 });
        assert.equal(r.failed, 0, r.stdout.slice(-1500));
        assert.equal(r.successful, calls);
        const st = await cluster.status();
        const shares = newCalls(st);
        const total = Object.values(shares).reduce((a, b) => a + b, 0);
        assert.ok(total >= calls, `the balancer routed every INVITE (${total})`);
        console.log(`# ${transport}: ${r.successful} calls, ${r.failed} failed; new calls per node ${JSON.stringify(shares)}`);
        for (const n of st.nodes) {
          const share = n.traffic.newCalls / total;
          assert.ok(share >= 0.25 && share <= 0.42, `${n.id} carried ${(share * 100).toFixed(1)} % of the calls (${JSON.stringify(shares)})`);
          // An ACK or BYE that reached another node than its INVITE's would be counted there as an unknown dialog.
          assert.equal(n.unknownDialogs, 0, `${n.id}: in-dialog requests for calls it did not hold`);
          assert.equal(n.state, 'up');
        }
        // `sipfleet status`, run in the folder: one line per node.
        const out = await cluster.cli(['status']);
        assert.equal(out.code, 0, out.stderr);
        for (const id of ['node-1', 'node-2', 'node-3']) assert.match(out.stdout, new RegExp(`^${id}\\s+\\d+\\s+${transport}:127\\.0\\.0\\.\\d+:\\d+\\s+up\\s+0\\s`, 'm'));
        const json = await cluster.cli(['status', '--json']);
        assert.equal((JSON.parse(json.stdout) as ClusterStatus).nodes.length, 3);
      } finally {
        await cluster.stop();
        await uas.stop({ graceful: false });
      }
    });
  }

  test('a node killed with SIGKILL is out of rotation in < 300 ms; new calls succeed and spread over the survivors', async () => {
    const uas = await startSippUas({ sf: SCENARIO_UAS_RR, localIp: '127.0.0.10' });
    const cluster = await startCluster(['--nodes', '3', '--app', 'proxy', '--route-to', `127.0.0.10:${uas.localPort}`, '--restart-delay-ms', '60000']);
    try {
      // Calls of 2 s, so that each node holds some when one dies.
      const first = startSipp({ sf: SCENARIO_UAC_RR, remote: cluster.sip, localIp: '127.0.0.1', rate: 50, maxCalls: 300, timeoutSec: 60, recvTimeoutMs: 10_000, extraArgs: ['-d', '2000'] });
      await waitUntil('node-2 to hold calls', async () => (await cluster.node('node-2')).calls >= 20);
      const victim = await cluster.node('node-2');
      const heldByVictim = victim.calls;
      const killedAt = Date.now();
      process.kill(victim.pid, 'SIGKILL');
      // The balancer's JSON log line: {"level":"info","time":"…","node":"balancer","msg":"node node-2 dead (unreachable…"}
      const m = await cluster.process.waitForOutput(/"time":"([^"]+)"[^\n]*"msg":"node node-2 dead \((\w+)/, 5_000, 'stdout');
      const detectedMs = Date.parse(m[1]!) - killedAt;
      console.log(`# node-2 (pid ${victim.pid}) killed; out of rotation after ${detectedMs} ms (${m[2]}), holding ${heldByVictim} calls`);
      assert.ok(detectedMs < 300, `detected after ${detectedMs} ms`);
      assert.equal((await cluster.node('node-2')).state, 'dead');
      // New calls counted from here: the balancer knows node-2 is dead.
      const before = newCalls(await cluster.status());
      const firstResult = await first.done;
      // Without replication (the failover issue), only the dead node's calls in progress may fail.
      assert.ok(firstResult.failed <= heldByVictim + 5, `${firstResult.failed} calls failed, the dead node held ${heldByVictim}`);
      assert.equal(firstResult.successful + firstResult.failed, 300);
      const second = await runSipp({ sf: SCENARIO_UAC_RR, remote: cluster.sip, localIp: '127.0.0.1', rate: 100, maxCalls: 400, timeoutSec: 60 });
      assert.equal(second.failed, 0, second.stdout.slice(-1500));
      const after = newCalls(await cluster.status());
      assert.equal(after['node-2'], before['node-2'], 'the dead node got no new call');
      const moved = { n1: after['node-1']! - before['node-1']!, n3: after['node-3']! - before['node-3']! };
      const total = moved.n1 + moved.n3;
      console.log(`# after the kill: node-1 took ${moved.n1}, node-3 took ${moved.n3} of ${total} new calls`);
      for (const v of [moved.n1, moved.n3]) assert.ok(Math.abs(v / total - 0.5) <= 0.15, `survivors' shares ${JSON.stringify(moved)}`);
      const st = await cluster.status();
      assert.equal(st.children?.find((c) => c.id === 'node-2')?.restarts, 0, 'restart is delayed in this test');
    } finally {
      await cluster.stop();
      await uas.stop({ graceful: false });
    }
  });

  test('a killed node is restarted under a new boot id and takes calls again', async () => {
    const cluster = await startCluster(['--nodes', '2', '--app', 'uas', '--restart-delay-ms', '200']);
    try {
      const before = (await cluster.status()).nodes.find((n) => n.id === 'node-1')!;
      process.kill(before.pid, 'SIGKILL');
      await cluster.process.waitForOutput(/node node-1 restarted \(boot (\w+)/, 10_000, 'stdout');
      await waitUntil('node-1 up again', async () => (await cluster.node('node-1')).state === 'up');
      const st = await cluster.status();
      const again = st.nodes.find((n) => n.id === 'node-1')! as unknown as { pid: number; boot: string };
      assert.notEqual(again.pid, before.pid);
      assert.notEqual(again.boot, (before as unknown as { boot: string }).boot);
      assert.equal(st.children?.find((c) => c.id === 'node-1')?.restarts, 1);
      const r = await runSipp({ sf: SCENARIO_UAC_RR, remote: cluster.sip, localIp: '127.0.0.1', rate: 100, maxCalls: 100, timeoutSec: 30 });
      assert.equal(r.failed, 0);
      assert.ok((await cluster.node('node-1')).traffic.newCalls > 0, 'the restarted node takes new calls');
    } finally {
      await cluster.stop();
    }
  });

  test('drain one node under load: 0 failed calls, it ends with 0 calls in progress and takes no new ones', async () => {
    const cluster = await startCluster(['--nodes', '3', '--app', 'uas']);
    try {
      const load = startSipp({ sf: SCENARIO_UAC_RR, remote: cluster.sip, localIp: '127.0.0.1', rate: 60, maxCalls: 480, timeoutSec: 60, extraArgs: ['-d', '2000'] });
      await waitUntil('node-2 to hold calls', async () => (await cluster.node('node-2')).calls >= 20);
      const out = await cluster.cli(['drain', 'node-2']);
      assert.equal(out.code, 0, out.stderr);
      // `drain` returns once the balancer has seen the node draining: from then on, it gets no new call.
      const atDrain = (await cluster.node('node-2')).traffic.newCalls;
      assert.equal((await cluster.node('node-2')).state, 'draining');
      await waitUntil('node-2 to reach 0 calls in progress', async () => (await cluster.node('node-2')).calls === 0, 15_000);
      const r = await load.done;
      assert.equal(r.failed, 0, r.stdout.slice(-1500));
      assert.equal(r.successful, 480);
      const end = await cluster.node('node-2');
      assert.equal(end.traffic.newCalls, atDrain, 'no new call after the drain');
      assert.equal(end.calls, 0);
      assert.equal(end.unknownDialogs, 0);
      const table = await cluster.cli(['status']);
      assert.match(table.stdout, /^node-2\s+\d+\s+\S+\s+draining\s+0\s/m);
    } finally {
      await cluster.stop();
    }
  });

  test('heartbeats with a wrong HMAC are refused; with every node dead, a new INVITE gets 503 with Retry-After', async () => {
    const cluster = await startCluster(['--nodes', '1', '--app', 'uas', '--restart-delay-ms', '60000'], { SIPFLEET_CLUSTER_SECRET: 'the-right-cluster-secret' });
    try {
      const st = await cluster.status();
      const control = st.control.replace(/^udp:/, '');
      const port = await freePort('127.0.0.9');
      const rogue = spawnProcess(process.execPath, ['--import', 'tsx', CLI, 'node', '--app', 'uas', '--listen', `127.0.0.9:${port}`, '--node-id', 'rogue', '--cluster-control', control], {
        env: { ...process.env, SIPFLEET_CLUSTER_SECRET: 'a-wrong-cluster-secret' }, name: 'rogue node',
      });
      await rogue.waitForOutput(/listening on/, 15_000, 'stdout');
      await waitUntil('refused heartbeats', async () => ((await cluster.status()).counters.refusedMac ?? 0) >= 3);
      assert.deepEqual((await cluster.status()).nodes.map((n) => n.id), ['node-1'], 'the rogue node is not a member');
      await rogue.stop(2000);

      process.kill(st.nodes[0]!.pid, 'SIGKILL');
      await waitUntil('node-1 dead', async () => (await cluster.node('node-1')).state === 'dead');
      const [host, p] = cluster.sip.split(':');
      const res = await sipPing(host!, Number(p), { method: 'INVITE', uri: 'sip:bob@127.0.0.1', timeoutMs: 2000 });
      assert.equal(res.status, 503);
      assert.match(res.raw, /^Retry-After: \d+\r$/m);
    } finally {
      await cluster.stop();
    }
  });
});
