import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, describe, test } from 'node:test';
import { createApp } from '../../apps/stack-uas.ts';
import { balancerMetrics, NodeMetrics } from '../../src/admin/metrics.ts';
import { Balancer } from '../../src/balancer/balancer.ts';
import { SipNode } from '../../src/server/node.ts';
import { freePort } from '../helpers/ports.ts';
import { parsePrometheus, sumOf } from '../helpers/prometheus.ts';

/** A UDP peer on its own loopback address: sends raw SIP, waits (bounded) for a response matching a pattern. */
class Peer {
  readonly socket = dgram.createSocket('udp4');
  readonly received: string[] = [];
  #waiters: Array<() => void> = [];
  port = 0;
  constructor(readonly host: string) {}

  async start(): Promise<void> {
    this.socket.on('message', (d) => {
      this.received.push(d.toString('latin1'));
      for (const w of this.#waiters) w();
    });
    await new Promise<void>((r) => this.socket.bind(0, this.host, r));
    this.port = this.socket.address().port;
  }

  send(text: string, host: string, port: number): void {
    this.socket.send(Buffer.from(text, 'latin1'), port, host);
  }

  next(re: RegExp, ms = 3000): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const m = this.received.find((t) => re.test(t));
        if (m === undefined) return false;
        this.#waiters = this.#waiters.filter((w) => w !== check);
        clearTimeout(timer);
        resolve(m);
        return true;
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== check);
        reject(new Error(`no message matching ${re} within ${ms} ms; got:\n${this.received.map((t) => t.split('\r\n')[0]).join('\n')}`));
      }, ms);
      if (!check()) this.#waiters.push(check);
    });
  }

  close(): void {
    this.socket.close();
  }
}

function request(method: string, peer: Peer, target: string, callId: string): string {
  return `${method} sip:uas@${target} SIP/2.0\r\n` +
    `Via: SIP/2.0/UDP ${peer.host}:${peer.port};branch=z9hG4bK${callId};rport\r\n` +
    `Max-Forwards: 70\r\nFrom: <sip:a@${peer.host}>;tag=caller\r\nTo: <sip:uas@${target}>\r\n` +
    `Call-ID: ${callId}\r\nCSeq: 1 ${method}\r\nContact: <sip:a@${peer.host}:${peer.port}>\r\nContent-Length: 0\r\n\r\n`;
}

describe('protection metrics', () => {
  const closers: Array<() => Promise<void> | void> = [];
  after(async () => { for (const c of closers.reverse()) await c(); });

  test('balancer: refusals by the per-source limits are exported, equal to the status counters', async () => {
    const host = '127.0.0.2';
    const [ext, int, control] = [await freePort(host), await freePort(host), await freePort(host, 'udp')];
    const balancer = await Balancer.start({
      external: [{ protocol: 'UDP', host, port: ext }],
      internal: [{ protocol: 'UDP', host, port: int }],
      control: { host, port: control },
      secret: 'metrics-protection-secret',
      sourceLimits: { rate: 1, burst: 1 },
    });
    closers.push(() => balancer.close());
    const registry = balancerMetrics(balancer);
    const flooder = new Peer('127.0.0.3');
    const marker = new Peer('127.0.0.4');
    for (const p of [flooder, marker]) {
      await p.start();
      closers.push(() => p.close());
    }
    // The first request is admitted (the burst) and answered 503 (no node); the others are refused unread.
    for (let i = 0; i < 5; i++) flooder.send(request('OPTIONS', flooder, `${host}:${ext}`, `flood-${i}`), host, ext);
    await flooder.next(/^SIP\/2\.0 503[^]*Call-ID: flood-0/m);
    // Another source has its own bucket; datagrams on one socket are read in order, so once its 503 is back
    // every datagram of the flood has been counted.
    marker.send(request('OPTIONS', marker, `${host}:${ext}`, 'marker'), host, ext);
    await marker.next(/^SIP\/2\.0 503[^]*Call-ID: marker/m);

    const { samples, types } = parsePrometheus(await registry.metrics());
    const counters = balancer.status().counters;
    const refusedRate = sumOf(samples, 'sipfleet_balancer_source_refused_total', { reason: 'rate' });
    assert.equal(types.get('sipfleet_balancer_source_refused_total'), 'counter');
    assert.ok(refusedRate > 0, `refused (rate) ${refusedRate}`);
    assert.equal(refusedRate, counters.sourceRefusedRate);
    assert.equal(sumOf(samples, 'sipfleet_balancer_source_refused_total', { reason: 'table_full' }), counters.sourceRefusedTableFull);
    assert.equal(sumOf(samples, 'sipfleet_balancer_external_refused_total'), counters.externalRefused);
    assert.equal(sumOf(samples, 'sipfleet_balancer_rejected_total', { side: 'external', reason: 'refused' }), counters.externalRefused);
    assert.equal(sumOf(samples, 'sipfleet_balancer_sources_tracked'), 2, 'the flooder and the marker');
    assert.equal(types.get('sipfleet_balancer_sources_tracked'), 'gauge');
    assert.equal(types.get('sipfleet_balancer_flow_failed_total'), 'counter');
    assert.equal(types.get('sipfleet_balancer_flow_invalid_total'), 'counter');
    assert.equal(types.get('sipfleet_balancer_node_overloaded'), 'gauge');
  });

  test('node: the overload monitor\'s state, episodes and refusals by reason are exported', async () => {
    const node = await SipNode.start({
      listen: [{ protocol: 'UDP', host: '127.0.0.5', port: await freePort('127.0.0.5') }], app: createApp({}),
      overload: { lagMs: 100, recoverMs: 60_000, maxHeapMb: 0 },
    });
    closers.push(() => node.close());
    const metrics = new NodeMetrics('n1');
    metrics.attach({ node, load: () => ({ calls: 0, unknownDialogs: 0 }), replication: null, heartbeatAgeMs: null });
    const scrape = async () => parsePrometheus(await metrics.registry.metrics()).samples;

    assert.equal(sumOf(await scrape(), 'sipfleet_node_overloaded'), 0);
    // Overloaded, as the sampler would find it; a new INVITE is then answered 503.
    node.overload!.update({ lagMs: 500, settingUp: 0, transactions: 0, heapMb: 0 });
    const peer = new Peer('127.0.0.6');
    await peer.start();
    closers.push(() => peer.close());
    const { host, port } = node.stack.transport.listening[0]!;
    peer.send(request('INVITE', peer, `${host}:${port}`, 'overloaded-call'), host, port);
    await peer.next(/^SIP\/2\.0 503[^]*Call-ID: overloaded-call/m);

    const samples = await scrape();
    assert.equal(sumOf(samples, 'sipfleet_node_overloaded', { node: 'n1' }), 1);
    assert.equal(sumOf(samples, 'sipfleet_node_overload_episodes_total'), 1);
    assert.equal(sumOf(samples, 'sipfleet_node_overload_rejected_total', { reason: 'lag' }), 1);
    assert.equal(sumOf(samples, 'sipfleet_node_overload_rejected_total'), node.overload!.rejected);
  });
});
