import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import { pickNode } from '../../src/balancer/routing.ts';
import { hashString } from '../../src/server/cluster/affinity.ts';
import { freePort } from '../helpers/ports.ts';
import { killAll, spawnProcess, type ProcessHandle } from '../helpers/proc.ts';
import { sipPing } from '../helpers/sip-ping.ts';
import { waitUntil, type ClusterStatus } from './sipfleet-cluster.ts';

after(() => killAll());

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = path.join(root, 'src/cli/main.ts');
const SECRET = `balancers-e2e-${process.pid}-secret`;
const env = { ...process.env, SIPFLEET_CLUSTER_SECRET: SECRET };

interface RunningBalancer {
  readonly name: string;
  readonly process: ProcessHandle;
  readonly sip: { host: string; port: number };
  readonly control: string;
  status(): Promise<ClusterStatus>;
}

async function startBalancer(name: string): Promise<RunningBalancer> {
  const [ext, internal, control] = [await freePort(), await freePort(), await freePort('127.0.0.1', 'udp')];
  const proc = spawnProcess(process.execPath, [
    '--import', 'tsx', CLI, 'balancer',
    '--listen', `127.0.0.1:${ext}`, '--internal', `127.0.0.1:${internal}`, '--control', `127.0.0.1:${control}`, '--admin', '127.0.0.1:0',
  ], { cwd: root, env, name: `balancer ${name}`, maxBuffer: 256 * 1024 });
  // Its first log line (JSON): "msg":"sipfleet balancer: external …, internal …, control …, admin http://…".
  const m = await proc.waitForOutput(/sipfleet balancer: .* admin (http:\/\/[^\s"]+)"/, 20_000, 'stdout');
  const adminUrl = m[1]!;
  return {
    name, process: proc, sip: { host: '127.0.0.1', port: ext }, control: `127.0.0.1:${control}`,
    async status() {
      const res = await fetch(`${adminUrl}/status`);
      assert.equal(res.status, 200);
      return (await res.json()) as ClusterStatus;
    },
  };
}

function startNode(id: string, host: string, port: number, controls: string[]): ProcessHandle {
  return spawnProcess(process.execPath, [
    '--import', 'tsx', CLI, 'node', '--app', 'uas', '--listen', `${host}:${port}`, '--node-id', id,
    ...controls.flatMap((c) => ['--cluster-control', c]),
  ], { cwd: root, env, name: id });
}

const requestsByNode = (st: ClusterStatus): Map<string, number> => new Map(st.nodes.map((n) => [n.id, n.traffic.requests]));

/** The one node whose request count went up by exactly one between two statuses (fails otherwise). */
function chosenNode(before: ClusterStatus, after: ClusterStatus, what: string): string {
  const b = requestsByNode(before);
  const changed = after.nodes.filter((n) => n.traffic.requests !== (b.get(n.id) ?? 0));
  assert.equal(changed.length, 1, `${what}: exactly one node got the request (${JSON.stringify(after.nodes.map((n) => [n.id, n.traffic]))})`);
  assert.equal(changed[0]!.traffic.requests, (b.get(changed[0]!.id) ?? 0) + 1, `${what}: one request`);
  return changed[0]!.id;
}

describe('two balancers in front of the same three nodes', () => {
  test('the same Call-ID goes to the same node through either balancer (30 calls, ≥ 2 nodes used)', async () => {
    const [a, b] = await Promise.all([startBalancer('A'), startBalancer('B')]);
    const hosts = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];
    const nodes = await Promise.all(hosts.map(async (host, i) => {
      const port = await freePort(host);
      const proc = startNode(`node-${i + 1}`, host, port, [a.control, b.control]);
      return { id: `node-${i + 1}`, host, port, proc };
    }));
    await Promise.all(nodes.map((n) => n.proc.waitForOutput(/listening on/, 20_000, 'stdout')));

    for (const bal of [a, b]) {
      await waitUntil(`balancer ${bal.name} to list 3 nodes up`, async () => {
        const st = await bal.status();
        return st.nodes.length === 3 && st.nodes.every((n) => n.state === 'up');
      }, 15_000);
      const st = await bal.status();
      assert.deepEqual(st.nodes.map((n) => n.id), ['node-1', 'node-2', 'node-3']);
      for (const n of nodes) {
        assert.deepEqual(st.nodes.find((x) => x.id === n.id)!.sip, [`udp:${n.host}:${n.port}`], `${bal.name} knows ${n.id} where it listens`);
      }
      assert.equal(st.counters.refusedMac, 0);
    }

    // The choice each balancer is meant to make, by the shared algorithm (rendezvous over the node ids).
    const routing = nodes.map((n) => ({ id: n.id, seed: hashString(n.id), version: '' }));
    const picks: Array<{ callId: string; viaA: string; viaB: string }> = [];
    for (let i = 0; i < 30; i++) {
      const callId = `balancers-e2e-${i}@client.example.org`;
      const a0 = await a.status();
      const ra = await sipPing(a.sip.host, a.sip.port, { callId, timeoutMs: 3000 });
      assert.equal(ra.status, 200, `${callId} via A: ${ra.raw}`);
      const viaA = chosenNode(a0, await a.status(), `${callId} via A`);

      const b0 = await b.status();
      const rb = await sipPing(b.sip.host, b.sip.port, { callId, timeoutMs: 3000 });
      assert.equal(rb.status, 200, `${callId} via B: ${rb.raw}`);
      const viaB = chosenNode(b0, await b.status(), `${callId} via B`);
      picks.push({ callId, viaA, viaB });
    }

    const disagree = picks.filter((p) => p.viaA !== p.viaB);
    assert.deepEqual(disagree, [], 'both balancers send each Call-ID to the same node');
    for (const p of picks) assert.equal(p.viaA, pickNode(routing, hashString(p.callId))!.id, `${p.callId}: the rendezvous choice`);
    const used = new Set(picks.map((p) => p.viaA));
    console.log(`# 30 Call-IDs over ${used.size} nodes: ${[...used].sort().map((id) => `${id} ${picks.filter((p) => p.viaA === id).length}`).join(', ')}`);
    assert.ok(used.size >= 2, `at least 2 nodes chosen, got ${[...used].join(', ')}`);

    // Each balancer saw every request and every response, and answered no 503.
    for (const bal of [a, b]) {
      const st = await bal.status();
      assert.equal(st.nodes.reduce((s, n) => s + n.traffic.requests, 0), 30, `${bal.name}: 30 requests to nodes`);
      assert.equal(st.nodes.reduce((s, n) => s + n.traffic.responses, 0), 0, `${bal.name}: responses to nodes (none: nodes sent no request)`);
      assert.equal(st.counters.noNode, 0);
      assert.equal(st.counters.toNodes, 30);
      assert.ok(st.nodes.every((n) => n.state === 'up'));
    }
  });
});
