import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import { freePort } from '../helpers/ports.ts';
import { killAll, spawnProcess, type ProcessHandle } from '../helpers/proc.ts';
import { runSipp, SCENARIO_UAC_RR, startSipp } from '../helpers/sipp.ts';
import { CLI, startCluster, waitUntil, type ClusterStatus } from './sipfleet-cluster.ts';

after(() => killAll());

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Resident memory of a process (MB), from /proc; 0 once it is gone. */
function rssMb(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? 0 : Number(m[1]) / 1024;
  } catch {
    return 0;
  }
}

interface FloodResult {
  sent: number;
  seconds: number;
  received: number;
}

/**
 * A flood of distinct initial INVITEs from one address, paced to `perSec` for `seconds`: all of them are built
 * first in one buffer (bounded: perSec × seconds messages), then sent in batches, each batch catching up with
 * the schedule, with setImmediate between batches so replies are read and timers run.
 */
async function flood(from: string, to: { host: string; port: number }, perSec: number, seconds: number): Promise<FloodResult> {
  const socket = dgram.createSocket({ type: 'udp4', sendBufferSize: 4 * 1024 * 1024 });
  let received = 0;
  socket.on('message', () => { received++; });
  await new Promise<void>((r) => socket.bind(0, from, r));
  const port = socket.address().port;
  const total = perSec * seconds;
  const messages: Buffer[] = [];
  for (let i = 0; i < total; i++) {
    messages.push(Buffer.from(
      `INVITE sip:flood@${to.host}:${to.port} SIP/2.0\r\nVia: SIP/2.0/UDP ${from}:${port};branch=z9hG4bKflood${i}\r\n` +
      `Max-Forwards: 70\r\nFrom: <sip:flood@${from}>;tag=f${i}\r\nTo: <sip:flood@${to.host}>\r\nCall-ID: flood-${i}@${from}\r\n` +
      `CSeq: 1 INVITE\r\nContact: <sip:flood@${from}:${port}>\r\nContent-Length: 0\r\n\r\n`, 'latin1'));
  }
  const start = performance.now();
  let sent = 0;
  let secondsTaken = 0;
  // Resolves once the last datagram is handed to the kernel (dgram runs send callbacks in order): replies still in
  // flight are of no interest, the socket can close.
  await new Promise<void>((resolve) => {
    const batch = (): void => {
      const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * perSec));
      const until = Math.min(due, sent + 2000);
      for (; sent < until; sent++) {
        if (sent === total - 1) socket.send(messages[sent]!, to.port, to.host, () => resolve());
        else socket.send(messages[sent]!, to.port, to.host);
      }
      if (sent >= total) secondsTaken = (performance.now() - start) / 1000;
      else setImmediate(batch);
    };
    batch();
  });
  socket.close();
  return { sent, seconds: secondsTaken, received };
}

describe('overload: a flood from one source', () => {
  test('20,000 INVITEs/s for 5 s from one address: ≥ 99 % of legitimate calls from another succeed, nodes stay small, the per-source counters show the flood', async () => {
    const cluster = await startCluster(['--nodes', '2', '--app', 'uas', '--source-rate', '300', '--source-burst', '600', '--max-heap-mb', '256']);
    try {
      const [host, port] = cluster.sip.split(':') as [string, string];
      const st0 = await cluster.status();
      const pids = st0.nodes.map((n) => n.pid);
      const rss = new Map<string, number>();
      const sample = setInterval(() => {
        for (const n of st0.nodes) rss.set(n.id, Math.max(rss.get(n.id) ?? 0, rssMb(n.pid)));
        rss.set('balancer', Math.max(rss.get('balancer') ?? 0, rssMb(cluster.process.pid)));
      }, 100);
      // Legitimate calls, 50/s for 14 s, from 127.0.0.20; the flood starts once they are flowing.
      const legit = startSipp({ sf: SCENARIO_UAC_RR, remote: cluster.sip, localIp: '127.0.0.20', rate: 50, maxCalls: 700, callLimit: 500, timeoutSec: 90 });
      await waitUntil('legitimate calls to flow', async () => (await cluster.status()).nodes.reduce((a, n) => a + n.traffic.newCalls, 0) >= 100, 20_000);
      const f = await flood('127.0.0.50', { host, port: Number(port) }, 20_000, 5);
      const r = await legit.done;
      clearInterval(sample);
      const st = await cluster.status();
      const c = st.counters;
      const total = r.successful + r.failed;
      const floodForwarded = st.nodes.reduce((a, n) => a + n.traffic.newCalls, 0) - total;
      console.log(`# legitimate: ${r.successful} of ${total} calls succeeded (${r.failed} failed); flood: ${f.sent} INVITEs in ${f.seconds.toFixed(2)} s ` +
        `(${Math.round(f.sent / f.seconds)}/s), ${f.received} replies; refused: rate ${c.sourceRefusedRate}, table full ${c.sourceRefusedTableFull}, ` +
        `external refused ${c.externalRefused}; flood INVITEs forwarded to nodes ${floodForwarded}; max RSS MB ${JSON.stringify(Object.fromEntries([...rss].map(([k, v]) => [k, Math.round(v)])))}`);
      assert.equal(total, 700, r.stdout.slice(-1500));
      assert.ok(r.successful / total >= 0.99, `${r.successful} of ${total} legitimate calls succeeded`);
      assert.ok(f.sent === 100_000 && f.seconds < 7, `the flood: ${f.sent} in ${f.seconds} s`);
      // At most rate × duration + burst flood INVITEs reach the nodes (with slack for the flood's own duration):
      // counted where the balancer hands new calls to nodes, less the legitimate ones (whose INVITE
      // retransmissions, if any, count against the flood: an upper bound).
      const admittedAtMost = 300 * (f.seconds + 2) + 600;
      assert.ok(floodForwarded <= admittedAtMost, `${floodForwarded} flood INVITEs reached the nodes (at most ${admittedAtMost})`);
      // The rest were refused by the limiter, but for what the kernel dropped before the balancer read it (a busy
      // box drops some of 20,000 datagrams/s): most of the flood shows in the counter.
      assert.ok(c.sourceRefusedRate >= f.sent / 2, `refused for rate: ${c.sourceRefusedRate}`);
      assert.equal(c.externalRefused, c.sourceRefusedRate + c.sourceRefusedTableFull);
      assert.equal(c.sourceRefusedTableFull, 0);
      // The nodes did not die or restart, and stayed small.
      assert.deepEqual(st.nodes.map((n) => [n.pid, n.state]), pids.map((p) => [p, 'up']));
      assert.ok(st.children?.every((ch) => ch.restarts === 0));
      for (const n of st0.nodes) assert.ok((rss.get(n.id) ?? 0) > 0 && rss.get(n.id)! < 400, `${n.id}: max RSS ${rss.get(n.id)} MB`);
      // The same counters through the CLI.
      const json = await cluster.cli(['status', '--json']);
      assert.equal(json.code, 0, json.stderr);
      assert.ok((JSON.parse(json.stdout) as ClusterStatus).counters.sourceRefusedRate! >= c.sourceRefusedRate);
    } finally {
      await cluster.stop();
    }
  });
});

const SECRET = `flood-e2e-${process.pid}-secret`;
const env = { ...process.env, SIPFLEET_CLUSTER_SECRET: SECRET };

/** A bare UDP SIP peer talking to one node directly. */
class Peer {
  readonly socket = dgram.createSocket('udp4');
  readonly received: string[] = [];
  #wake: (() => void) | null = null;
  port = 0;

  async start(host: string): Promise<void> {
    this.socket.on('message', (d) => {
      this.received.push(d.toString('latin1'));
      this.#wake?.();
    });
    await new Promise<void>((r) => this.socket.bind(0, host, r));
    this.port = this.socket.address().port;
  }

  send(text: string, to: { host: string; port: number }): void {
    this.socket.send(Buffer.from(text, 'latin1'), to.port, to.host);
  }

  async next(re: RegExp, ms: number): Promise<string> {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = this.received.find((t) => re.test(t));
      if (m !== undefined) return m;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no message matching ${re} within ${ms} ms; got: ${this.received.map((t) => t.split('\r\n')[0]).join(' | ')}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#wake = () => { clearTimeout(t); resolve(); };
      });
    }
  }

  close(): void {
    this.socket.close();
  }
}

function sipRequest(method: string, peer: Peer, from: string, to: { host: string; port: number }, callId: string, o: { toTag?: string; cseq?: number; branch: string }): string {
  return `${method} sip:uas@${to.host}:${to.port} SIP/2.0\r\nVia: SIP/2.0/UDP ${from}:${peer.port};branch=${o.branch};rport\r\n` +
    `Max-Forwards: 70\r\nFrom: <sip:peer@${from}>;tag=p${callId}\r\nTo: <sip:uas@${to.host}>${o.toTag === undefined ? '' : `;tag=${o.toTag}`}\r\n` +
    `Call-ID: ${callId}\r\nCSeq: ${o.cseq ?? 1} ${method}\r\nContact: <sip:peer@${from}:${peer.port}>\r\nContent-Length: 0\r\n\r\n`;
}

describe('overload: a node past its limit', () => {
  test('new INVITEs get 503 + Retry-After, an in-dialog BYE is still answered, the balancer sends new calls to the other node', async () => {
    const [ext, internal, control] = [await freePort(), await freePort(), await freePort('127.0.0.1', 'udp')];
    const balancer = spawnProcess(process.execPath, [
      '--import', 'tsx', CLI, 'balancer', '--listen', `127.0.0.1:${ext}`, '--internal', `127.0.0.1:${internal}`, '--control', `127.0.0.1:${control}`, '--admin', '127.0.0.1:0',
    ], { cwd: root, env, name: 'balancer', maxBuffer: 256 * 1024 });
    const adminUrl = (await balancer.waitForOutput(/sipfleet balancer: .* admin (http:\/\/[^\s"]+)"/, 20_000, 'stdout'))[1]!;
    type Status = Omit<ClusterStatus, 'nodes'> & { nodes: Array<ClusterStatus['nodes'][number] & { overloaded: boolean; overloadReason: string | null }> };
    const status = async (): Promise<Status> => (await (await fetch(`${adminUrl}/status`)).json()) as Status;
    const nodes: ProcessHandle[] = [];
    const node1 = { host: '127.0.0.2', port: await freePort('127.0.0.2') };
    const node2 = { host: '127.0.0.3', port: await freePort('127.0.0.3') };
    const common = ['--app', 'uas', '--balancer', `127.0.0.1:${internal}`, '--cluster-control', `127.0.0.1:${control}`];
    // node-1 rings 1.5 s and takes at most 5 calls being set up; it recovers only after 60 s (longer than the test).
    nodes.push(spawnProcess(process.execPath, ['--import', 'tsx', CLI, 'node', ...common, '--node-id', 'node-1', '--listen', `${node1.host}:${node1.port}`, '--admin', `${node1.host}:0`,
      '--ring-ms', '1500', '--max-calls-setting-up', '5', '--overload-retry-after-s', '7', '--overload-recover-ms', '60000'], { cwd: root, env, name: 'node-1', maxBuffer: 256 * 1024 }));
    nodes.push(spawnProcess(process.execPath, ['--import', 'tsx', CLI, 'node', ...common, '--node-id', 'node-2', '--listen', `${node2.host}:${node2.port}`], { cwd: root, env, name: 'node-2' }));
    const peer = new Peer();
    try {
      await waitUntil('both nodes up', async () => (await status()).nodes.filter((n) => n.state === 'up').length === 2, 20_000);
      await peer.start('127.0.0.30');
      const from = '127.0.0.30';
      // call-0 to call-4 fill node-1's limit (each rings 1.5 s); call-5 and call-6 find it full.
      for (let i = 0; i <= 6; i++) peer.send(sipRequest('INVITE', peer, from, node1, `call-${i}`, { branch: `z9hG4bKc${i}` }), node1);
      const refused = await peer.next(/^SIP\/2\.0 503[^]*Call-ID: call-5\r/m, 5000);
      assert.match(refused, /^Retry-After: 7\r$/m);
      await peer.next(/^SIP\/2\.0 503[^]*Call-ID: call-6\r/m, 5000);
      for (let i = 0; i <= 4; i++) await peer.next(new RegExp(`^SIP/2\\.0 180[^]*Call-ID: call-${i}\\r`, 'm'), 5000);
      // The balancer learns it from node-1's heartbeat.
      await waitUntil('the balancer to see node-1 overloaded', async () => (await status()).nodes.find((n) => n.id === 'node-1')?.overloaded === true, 5000);
      const st1 = await status();
      assert.equal(st1.nodes.find((n) => n.id === 'node-1')!.overloadReason, 'calls');
      // call-0 is answered once it has rung; its ACK and BYE are served although node-1 is still overloaded.
      const ok = await peer.next(/^SIP\/2\.0 200[^]*Call-ID: call-0\r/m, 5000);
      const toTag = /^To:.*;tag=([^;\r\n]+)/m.exec(ok)![1]!;
      peer.send(sipRequest('ACK', peer, from, node1, 'call-0', { toTag, branch: 'z9hG4bKack0' }), node1);
      peer.send(sipRequest('BYE', peer, from, node1, 'call-0', { toTag, cseq: 2, branch: 'z9hG4bKbye0' }), node1);
      await peer.next(/^SIP\/2\.0 200[^]*Call-ID: call-0\r[^]*CSeq: 2 BYE/m, 5000);
      // New calls through the balancer: all to node-2, all succeed.
      const before = await status();
      const r = await runSipp({ sf: SCENARIO_UAC_RR, remote: `127.0.0.1:${ext}`, localIp: '127.0.0.1', rate: 50, maxCalls: 100, timeoutSec: 60 });
      assert.equal(r.failed, 0, r.stdout.slice(-1500));
      assert.equal(r.successful, 100);
      const end = await status();
      const newCalls = (s: ClusterStatus, id: string): number => s.nodes.find((n) => n.id === id)!.traffic.newCalls;
      assert.equal(newCalls(end, 'node-1'), newCalls(before, 'node-1'), 'no new call to the overloaded node');
      assert.equal(newCalls(end, 'node-2') - newCalls(before, 'node-2'), 100);
      assert.equal(end.nodes.find((n) => n.id === 'node-1')!.overloaded, true);
      // node-1's own counters: the refused calls, by reason.
      const n1 = end.nodes.find((n) => n.id === 'node-1')!;
      const own = (await (await fetch(`${n1.admin}/status`)).json()) as { overload: { counters: { rejectedCalls: number } } };
      assert.equal(own.overload.counters.rejectedCalls, 2);
      console.log(`# node-1 overloaded (calls): 2 INVITEs answered 503 Retry-After 7, BYE answered; 100 new calls through the balancer, all on node-2`);
    } finally {
      peer.close();
      await Promise.all(nodes.map((n) => n.stop(5000)));
      await balancer.stop(5000);
    }
  });
});
