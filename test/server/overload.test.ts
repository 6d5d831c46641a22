import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, describe, test } from 'node:test';
import { createApp } from '../../apps/stack-uas.ts';
import { SipNode } from '../../src/server/node.ts';
import { OverloadConfigError, OverloadMonitor, type LoadReading } from '../../src/server/overload.ts';

const calm: LoadReading = { lagMs: 1, settingUp: 0, transactions: 0, heapMb: 10 };

describe('OverloadMonitor: thresholds and hysteresis', () => {
  test('overloaded at a limit; recovers only below 80 % of every limit for recoverMs, without flapping', () => {
    const m = new OverloadMonitor({ lagMs: 100, maxCallsSettingUp: 50, maxHeapMb: 1000, recoverMs: 1000 });
    const changes: Array<[boolean, string | null]> = [];
    m.onChange = (o, r) => changes.push([o, r]);
    assert.equal(m.update(calm, 0), false);
    assert.equal(m.update({ ...calm, lagMs: 150 }, 100), true);
    assert.equal(m.reason, 'lag');
    // Below the limit but above 80 % of it: still overloaded, whatever the time.
    assert.equal(m.update({ ...calm, lagMs: 90 }, 200), true);
    assert.equal(m.update({ ...calm, lagMs: 85 }, 5000), true);
    // Below 80 %: the calm period starts; a reading back above 80 % restarts it.
    assert.equal(m.update({ ...calm, lagMs: 50 }, 6000), true);
    assert.equal(m.update({ ...calm, lagMs: 50 }, 6900), true);
    assert.equal(m.update({ ...calm, lagMs: 81 }, 6950), true);
    assert.equal(m.update({ ...calm, lagMs: 10 }, 7000), true);
    assert.equal(m.update({ ...calm, lagMs: 10 }, 7999), true);
    assert.equal(m.update({ ...calm, lagMs: 10 }, 8000), false);
    assert.equal(m.reason, null);
    assert.deepEqual(changes, [[true, 'lag'], [false, null]]);
    // Each limit counts: heap, then calls.
    assert.equal(m.update({ ...calm, heapMb: 1000 }, 9000), true);
    assert.equal(m.reason, 'heap');
    assert.equal(m.counters.episodes, 2);
  });

  test('admit() checks the hard counts at once and counts refusals by reason; a limit of 0 is off', () => {
    const m = new OverloadMonitor({ maxCallsSettingUp: 3, maxHeapMb: 0 });
    let settingUp = 0;
    const load = { settingUp: () => settingUp, transactions: () => 1_000_000 };
    assert.equal(m.admit(load), null);
    settingUp = 3;
    assert.equal(m.admit(load), 'calls');
    assert.equal(m.overloaded, true);
    settingUp = 0;
    assert.equal(m.admit(load), 'calls', 'stays overloaded until it has recovered (hysteresis)');
    assert.equal(m.counters.rejectedCalls, 2);
    assert.equal(m.rejected, 2);
    const off = new OverloadMonitor({ maxHeapMb: 0 });
    assert.equal(off.update({ lagMs: 1e6, settingUp: 1e6, transactions: 1e6, heapMb: 1e6 }, 0), false);
  });

  test('bad limits are typed errors naming the limit', () => {
    assert.throws(() => new OverloadMonitor({ lagMs: -1 }), (e: unknown) => e instanceof OverloadConfigError && e.key === 'lagMs');
    assert.throws(() => new OverloadMonitor({ recoverRatio: 2 }), (e: unknown) => e instanceof OverloadConfigError && e.key === 'recoverRatio');
  });
});

/** A bare-bones UDP SIP peer: sends requests, collects what comes back. */
class Peer {
  readonly socket = dgram.createSocket('udp4');
  readonly received: string[] = [];
  #waiters: Array<() => void> = [];
  port = 0;

  async start(): Promise<void> {
    this.socket.on('message', (d) => {
      this.received.push(d.toString('latin1'));
      for (const w of this.#waiters) w();
    });
    await new Promise<void>((r) => this.socket.bind(0, '127.0.0.1', r));
    this.port = this.socket.address().port;
  }

  send(text: string, port: number): void {
    this.socket.send(Buffer.from(text, 'latin1'), port, '127.0.0.1');
  }

  /** The first message received matching `re`, waiting up to `ms`. */
  next(re: RegExp, ms = 2000): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const m = this.received.find((t) => re.test(t));
        if (m === undefined) return false;
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        clearTimeout(timer);
        resolve(m);
        return true;
      };
      const waiter = (): void => { check(); };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(new Error(`no message matching ${re} within ${ms} ms; got:\n${this.received.map((t) => t.split('\r\n')[0]).join('\n')}`));
      }, ms);
      if (!check()) this.#waiters.push(waiter);
    });
  }

  close(): void {
    this.socket.close();
  }
}

function request(method: string, peer: Peer, nodePort: number, callId: string, opts: { toTag?: string; cseq?: number; branch?: string } = {}): string {
  return `${method} sip:uas@127.0.0.1:${nodePort} SIP/2.0\r\n` +
    `Via: SIP/2.0/UDP 127.0.0.1:${peer.port};branch=${opts.branch ?? `z9hG4bK${callId}${method}${opts.cseq ?? 1}`};rport\r\n` +
    `Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=caller\r\nTo: <sip:uas@127.0.0.1>${opts.toTag === undefined ? '' : `;tag=${opts.toTag}`}\r\n` +
    `Call-ID: ${callId}\r\nCSeq: ${opts.cseq ?? 1} ${method === 'ACK' && opts.cseq === undefined ? 'ACK' : method}\r\n` +
    `Contact: <sip:a@127.0.0.1:${peer.port}>\r\nContent-Length: 0\r\n\r\n`;
}

const toTagOf = (msg: string): string => /^To:.*;tag=([^;\r\n]+)/m.exec(msg)![1]!;

describe('SipNode under overload', () => {
  const closers: Array<() => Promise<void> | void> = [];
  after(async () => { for (const c of closers.reverse()) await c(); });

  test('a new INVITE gets 503 with Retry-After before the app sees it; in-dialog BYE of a call in progress is still answered', async () => {
    const node = await SipNode.start({
      listen: [{ protocol: 'UDP', host: '127.0.0.1', port: 0 }], app: createApp({}),
      overload: { lagMs: 100, retryAfterS: 7, recoverMs: 60_000, maxHeapMb: 0 },
    });
    closers.push(() => node.close());
    const peer = new Peer();
    await peer.start();
    closers.push(() => peer.close());
    const port = node.stack.transport.listening[0]!.port;
    // A call set up before the overload.
    peer.send(request('INVITE', peer, port, 'call-1'), port);
    const ok = await peer.next(/^SIP\/2\.0 200[^]*Call-ID: call-1/m);
    const tag = toTagOf(ok);
    peer.send(request('ACK', peer, port, 'call-1', { toTag: tag, branch: 'z9hG4bKack1' }), port);
    // Overloaded (as the sampler would find it).
    node.overload!.update({ lagMs: 500, settingUp: 0, transactions: 0, heapMb: 0 });
    assert.equal(node.overload!.overloaded, true);
    peer.send(request('INVITE', peer, port, 'call-2'), port);
    const refused = await peer.next(/^SIP\/2\.0 503[^]*Call-ID: call-2/m);
    assert.match(refused, /^Retry-After: 7\r$/m);
    assert.match(refused, /^To: .*;tag=sfol/m);
    assert.equal(node.overload!.counters.rejectedLag, 1);
    assert.equal(peer.received.some((t) => /^SIP\/2\.0 180[^]*Call-ID: call-2/m.test(t)), false, 'the app never saw it');
    // The BYE of the call in progress: served.
    peer.send(request('BYE', peer, port, 'call-1', { toTag: tag, cseq: 2 }), port);
    await peer.next(/^SIP\/2\.0 200[^]*Call-ID: call-1[^]*CSeq: 2 BYE/m);
    // ACK for the 503 (stateful here: its transaction absorbs it and stops retransmitting).
    peer.send(request('ACK', peer, port, 'call-2', { toTag: toTagOf(refused), branch: 'z9hG4bKcall-2INVITE1' }), port);
  });

  test('overloaded for memory: the 503 is sent statelessly (no transaction kept), its ACK dropped before the app', async () => {
    const seen: string[] = [];
    const inner = createApp({});
    const app = { ...inner, name: 'spy', onRequest: (req: Parameters<typeof inner.onRequest>[0], tx: Parameters<typeof inner.onRequest>[1], s: Parameters<typeof inner.onRequest>[2]) => { seen.push(req.method); inner.onRequest(req, tx, s); } };
    const node = await SipNode.start({
      listen: [{ protocol: 'UDP', host: '127.0.0.1', port: 0 }], app,
      overload: { maxHeapMb: 100, recoverMs: 60_000 },
    });
    closers.push(() => node.close());
    const peer = new Peer();
    await peer.start();
    closers.push(() => peer.close());
    const port = node.stack.transport.listening[0]!.port;
    node.overload!.update({ lagMs: 0, settingUp: 0, transactions: 0, heapMb: 200 });
    const before = node.stack.transactions.serverCount;
    for (let i = 0; i < 20; i++) peer.send(request('INVITE', peer, port, `flood-${i}`), port);
    const last = await peer.next(/^SIP\/2\.0 503[^]*Call-ID: flood-19/m);
    await peer.next(/^SIP\/2\.0 503[^]*Call-ID: flood-0\r/m);
    assert.equal(node.stack.transactions.serverCount, before, 'no transaction kept for the refused INVITEs');
    assert.equal(node.overload!.counters.rejectedHeap, 20);
    assert.equal(node.overload!.counters.rejectedStateless, 20);
    peer.send(request('ACK', peer, port, 'flood-19', { toTag: toTagOf(last), branch: 'z9hG4bKflood-19INVITE1' }), port);
    // An OPTIONS after the ACK: once it is answered, the ACK was handled (UDP from one socket arrives in order).
    peer.send(request('OPTIONS', peer, port, 'ping'), port);
    await peer.next(/^SIP\/2\.0 200[^]*Call-ID: ping/m);
    assert.deepEqual(seen, ['OPTIONS'], 'neither the INVITEs nor the ACK of their 503 reached the app');
  });
});

describe('balancer side: heartbeat field and new-call routing', () => {
  test('the heartbeat carries overloaded and its reason; a bad type is refused as a format error', async () => {
    const { encodeHeartbeat, decodeHeartbeat, HeartbeatError } = await import('../../src/server/cluster/heartbeat.ts');
    const base = { id: 'n', boot: 'b', version: '1', addresses: [], draining: false, calls: 0, unknownDialogs: 0, pid: 1, seq: 1, ts: Date.now() };
    const a = decodeHeartbeat(encodeHeartbeat({ ...base, overloaded: true, overloadReason: 'heap' }, 'secret-secret'), 'secret-secret');
    assert.equal(a.overloaded, true);
    assert.equal(a.overloadReason, 'heap');
    assert.equal(decodeHeartbeat(encodeHeartbeat(base, 'secret-secret'), 'secret-secret').overloaded, undefined);
    assert.throws(() => decodeHeartbeat(encodeHeartbeat({ ...base, overloaded: 'yes' as unknown as boolean }, 'secret-secret'), 'secret-secret'),
      (e: unknown) => e instanceof HeartbeatError && e.code === 'HEARTBEAT_FORMAT');
  });

  test('new calls avoid overloaded nodes; when all are overloaded they still go to them (each answers 503 itself)', async () => {
    const { notOverloaded } = await import('../../src/balancer/routing.ts');
    const n = (id: string, overloaded: boolean) => ({ id, seed: 0, version: '1', overloaded });
    assert.deepEqual(notOverloaded([n('a', true), n('b', false)]).map((x) => x.id), ['b']);
    assert.deepEqual(notOverloaded([n('a', true), n('b', true)]).map((x) => x.id), ['a', 'b']);
  });
});
