import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import dgram from 'node:dgram';
import { after, describe, test } from 'node:test';
import { Balancer } from '../../../src/balancer/balancer.ts';
import { DEFAULT_DEAD_AFTER_MS, Membership, type MembershipEvent } from '../../../src/balancer/membership.ts';
import {
  decodeCommand,
  decodeHeartbeat,
  encodeCommand,
  encodeHeartbeat,
  HEARTBEAT_MAX_SKEW_MS,
  HeartbeatError,
  HeartbeatSender,
  type HeartbeatErrorCode,
  type NodeAnnouncement,
} from '../../../src/server/cluster/heartbeat.ts';
import type { ListenAddress } from '../../../src/sip/transport/types.ts';

const SECRET = 'the-cluster-secret';
const HOST = '127.0.0.1';

function announcement(over: Partial<NodeAnnouncement> = {}): NodeAnnouncement {
  return {
    id: 'node-1', boot: 'b00t', version: '1.2.3',
    addresses: [{ protocol: 'UDP', host: '127.0.0.2', port: 5070 }, { protocol: 'TCP', host: '127.0.0.2', port: 5070 }],
    draining: false, calls: 7, unknownDialogs: 1, pid: 4242, seq: 9, ts: Date.now(), ...over,
  };
}

function throwsCode(fn: () => unknown, code: HeartbeatErrorCode, what: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof HeartbeatError, `${what}: a HeartbeatError, got ${String(e)}`);
    assert.equal(e.code, code, `${what}: ${e.message}`);
    return true;
  });
}

/** The datagram with its JSON body replaced, keeping the MAC that was computed for the original. */
function withBody(data: Buffer, body: string): Buffer {
  const text = data.toString('utf8');
  return Buffer.from(text.slice(0, 'SFHB1 '.length + 64 + 1) + body);
}

/** `SFHB1 <hmac-sha256 hex of body> <body>` built here, for bodies encodeHeartbeat would never produce. */
function signed(body: string, secret = SECRET): Buffer {
  return Buffer.from(`SFHB1 ${createHmac('sha256', secret).update(body).digest('hex')} ${body}`);
}

describe('heartbeat datagrams', () => {
  test('round trip: every field comes back as sent', () => {
    const a = announcement({ draining: true });
    const data = encodeHeartbeat(a, SECRET);
    assert.match(data.toString('utf8'), /^SFHB1 [0-9a-f]{64} \{/);
    assert.deepEqual(decodeHeartbeat(data, SECRET), a);
  });

  test('a wrong secret is HEARTBEAT_MAC', () => {
    throwsCode(() => decodeHeartbeat(encodeHeartbeat(announcement(), 'another-secret'), SECRET), 'HEARTBEAT_MAC', 'wrong secret');
  });

  test('a tampered body or MAC is HEARTBEAT_MAC', () => {
    const a = announcement();
    const data = encodeHeartbeat(a, SECRET);
    const body = JSON.stringify(a);
    throwsCode(() => decodeHeartbeat(withBody(data, body.replace('"draining":false', '"draining":true ')), SECRET), 'HEARTBEAT_MAC', 'draining flipped');
    throwsCode(() => decodeHeartbeat(withBody(data, body.replace('"calls":7', '"calls":8')), SECRET), 'HEARTBEAT_MAC', 'calls changed');
    throwsCode(() => decodeHeartbeat(withBody(data, body.replace('127.0.0.2', '127.0.0.9')), SECRET), 'HEARTBEAT_MAC', 'address changed');
    throwsCode(() => decodeHeartbeat(withBody(data, body + ' '), SECRET), 'HEARTBEAT_MAC', 'a byte appended');
    const text = data.toString('utf8');
    const flipped = text.slice(0, 6) + (text[6] === '0' ? '1' : '0') + text.slice(7);
    throwsCode(() => decodeHeartbeat(Buffer.from(flipped), SECRET), 'HEARTBEAT_MAC', 'MAC digit changed');
    const notHex = text.slice(0, 6) + 'zz' + text.slice(8);
    throwsCode(() => decodeHeartbeat(Buffer.from(notHex), SECRET), 'HEARTBEAT_MAC', 'MAC not hex');
  });

  test(`older or newer than ${HEARTBEAT_MAX_SKEW_MS} ms is HEARTBEAT_STALE (a replay)`, () => {
    const now = 1_700_000_000_000;
    const at = (ts: number): Buffer => encodeHeartbeat(announcement({ ts }), SECRET);
    throwsCode(() => decodeHeartbeat(at(now - HEARTBEAT_MAX_SKEW_MS - 1), SECRET, now), 'HEARTBEAT_STALE', '10 s + 1 ms old');
    throwsCode(() => decodeHeartbeat(at(now - 60_000), SECRET, now), 'HEARTBEAT_STALE', 'a minute old');
    throwsCode(() => decodeHeartbeat(at(now + HEARTBEAT_MAX_SKEW_MS + 1), SECRET, now), 'HEARTBEAT_STALE', 'from the future');
    assert.equal(decodeHeartbeat(at(now - HEARTBEAT_MAX_SKEW_MS), SECRET, now).ts, now - HEARTBEAT_MAX_SKEW_MS, 'exactly 10 s is accepted');
    assert.equal(decodeHeartbeat(at(now - 9_000), SECRET, now).ts, now - 9_000);
    // A stale datagram with a wrong MAC is a MAC error: nothing in it is believed.
    throwsCode(() => decodeHeartbeat(encodeHeartbeat(announcement({ ts: now - 60_000 }), 'x-secret'), SECRET, now), 'HEARTBEAT_MAC', 'stale and forged');
  });

  test('garbage is HEARTBEAT_FORMAT', () => {
    for (const g of ['', 'hello', 'SFHB1 ', 'SFHB1 abc {}', 'OPTIONS sip:x SIP/2.0\r\n\r\n', 'SFHB2 ' + '0'.repeat(64) + ' {}', 'SFHB1 ' + '0'.repeat(64) + '{}']) {
      throwsCode(() => decodeHeartbeat(Buffer.from(g), SECRET), 'HEARTBEAT_FORMAT', JSON.stringify(g));
    }
    throwsCode(() => decodeHeartbeat(Buffer.from([0xff, 0xfe, 0x00, 0x01]), SECRET), 'HEARTBEAT_FORMAT', 'binary');
  });

  test('a correctly signed body that is not a heartbeat is HEARTBEAT_FORMAT', () => {
    const a = announcement();
    const bodies: Array<[string, unknown]> = [
      ['not JSON', 'not json at all'],
      ['no id', { ...a, id: undefined }],
      ['empty id', { ...a, id: '' }],
      ['seq a string', { ...a, seq: '9' }],
      ['no ts', { ...a, ts: undefined }],
      ['addresses not a list', { ...a, addresses: 'udp:1.2.3.4:5060' }],
      ['a bad protocol', { ...a, addresses: [{ protocol: 'SCTP', host: '127.0.0.2', port: 5060 }] }],
      ['a port as text', { ...a, addresses: [{ protocol: 'UDP', host: '127.0.0.2', port: '5060' }] }],
    ];
    for (const [what, body] of bodies) {
      const data = signed(typeof body === 'string' ? body : JSON.stringify(body));
      throwsCode(() => decodeHeartbeat(data, SECRET), 'HEARTBEAT_FORMAT', what);
    }
    // The hand-built framing is the real one: a valid body signed this way decodes.
    assert.deepEqual(decodeHeartbeat(signed(JSON.stringify(a)), SECRET), a);
  });
});

describe('balancer commands', () => {
  test('round trip', () => {
    const c = { id: 'node-2', drain: true, ts: Date.now() };
    const data = encodeCommand(c, SECRET);
    assert.match(data.toString('utf8'), /^SFCM1 [0-9a-f]{64} \{/);
    assert.deepEqual(decodeCommand(data, SECRET), c);
    assert.deepEqual(decodeCommand(encodeCommand({ ...c, drain: false }, SECRET), SECRET), { ...c, drain: false });
  });

  test('a wrong secret, tampering, staleness or garbage → null', () => {
    const now = Date.now();
    const c = { id: 'node-2', drain: true, ts: now };
    assert.equal(decodeCommand(encodeCommand(c, 'another-secret'), SECRET), null, 'wrong secret');
    const text = encodeCommand(c, SECRET).toString('utf8');
    assert.equal(decodeCommand(Buffer.from(text.replace('"drain":true', '"drain":false')), SECRET), null, 'tampered');
    assert.equal(decodeCommand(encodeCommand({ ...c, ts: now - HEARTBEAT_MAX_SKEW_MS - 1 }, SECRET), SECRET, now), null, 'stale');
    assert.equal(decodeCommand(encodeCommand({ id: 'node-2', drain: 'yes', ts: now } as never, SECRET), SECRET), null, 'drain not a boolean');
    for (const g of ['', 'SFCM1 ', 'SFPROBE', 'hello world']) assert.equal(decodeCommand(Buffer.from(g), SECRET), null, JSON.stringify(g));
    assert.equal(decodeCommand(encodeHeartbeat(announcement(), SECRET), SECRET), null, 'a heartbeat is not a command');
  });
});

// ---- a real sender and a real membership over UDP on 127.0.0.1 ----

const closers: Array<() => unknown> = [];
after(async () => {
  for (const c of closers.reverse()) await c();
});

/** Membership events, taken in order with a bounded wait (never a sleep). */
class Events {
  readonly #queue: MembershipEvent[] = [];
  readonly #waiters: Array<{ pred: (e: MembershipEvent) => boolean; resolve: (e: MembershipEvent) => void }> = [];
  readonly all: MembershipEvent[] = [];
  constructor(membership: Membership) {
    membership.onEvent = (e) => {
      this.all.push(e);
      const i = this.#waiters.findIndex((w) => w.pred(e));
      if (i !== -1) this.#waiters.splice(i, 1)[0]!.resolve(e);
      else this.#queue.push(e);
    };
  }

  /** The first event (not yet taken) matching pred, within ms. */
  next(pred: (e: MembershipEvent) => boolean, ms: number, what: string): Promise<MembershipEvent> {
    const i = this.#queue.findIndex(pred);
    if (i !== -1) return Promise.resolve(this.#queue.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      const w = {
        pred,
        resolve: (e: MembershipEvent): void => { clearTimeout(timer); resolve(e); },
      };
      const timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(w), 1);
        reject(new Error(`timed out after ${ms} ms waiting for ${what}; events so far: ${this.all.map((e) => `${e.member.id}:${e.type}`).join(' ')}`));
      }, ms);
      this.#waiters.push(w);
    });
  }
}

async function startMembership(deadAfterMs?: number): Promise<{ membership: Membership; events: Events }> {
  // 250 ms unless told: silence-based tests run quicker than with the default (DEFAULT_DEAD_AFTER_MS).
  const membership = new Membership({ secret: SECRET, host: HOST, port: 0, deadAfterMs: deadAfterMs ?? 250 });
  await membership.start();
  closers.push(() => membership.close());
  assert.ok(membership.port > 0);
  return { membership, events: new Events(membership) };
}

async function startSender(membership: Membership, id: string, over: { secret?: string; addresses?: ListenAddress[]; version?: string } = {}): Promise<HeartbeatSender> {
  const sender = new HeartbeatSender({
    id, version: over.version ?? '1.0.0', secret: over.secret ?? SECRET, bindHost: HOST,
    addresses: over.addresses ?? [{ protocol: 'UDP', host: HOST, port: 15060 }],
    targets: [{ host: HOST, port: membership.port }],
  });
  await sender.start();
  closers.push(() => sender.stop());
  return sender;
}

const is = (type: MembershipEvent['type'], id: string) => (e: MembershipEvent): boolean => e.type === type && e.member.id === id;

describe('HeartbeatSender → Membership over UDP', () => {
  test('a node joins with its addresses, version and load', async () => {
    const { membership, events } = await startMembership();
    const addresses: ListenAddress[] = [{ protocol: 'UDP', host: '127.0.0.2', port: 5071 }, { protocol: 'TCP', host: '127.0.0.2', port: 5071 }];
    const sender = await startSender(membership, 'node-a', { addresses, version: '2.1.0' });
    const e = await events.next(is('joined', 'node-a'), 1000, 'node-a to join');
    const m = e.member;
    assert.equal(m, membership.get('node-a'));
    assert.equal(m.state, 'up');
    assert.deepEqual(m.addresses, addresses);
    assert.equal(m.version, '2.1.0');
    assert.equal(m.boot, sender.boot);
    assert.equal(m.pid, process.pid);
    assert.equal(membership.byAddress('127.0.0.2', 5071), m);
    assert.equal(m.address('TCP')?.protocol, 'TCP');
    assert.deepEqual(membership.aliveNodes.map((n) => n.id), ['node-a']);
    assert.deepEqual(membership.newCallNodes.map((n) => n.id), ['node-a']);
    assert.ok(sender.sent >= 1);
    assert.equal(membership.counters.refusedMac, 0);
  });

  test('draining = true on the sender shows as state draining at once; false takes calls again', async () => {
    const { membership, events } = await startMembership();
    const sender = await startSender(membership, 'node-d');
    await events.next(is('joined', 'node-d'), 1000, 'node-d to join');
    const sentBefore = sender.sent;
    sender.draining = true;
    assert.equal(sender.draining, true);
    assert.equal(sender.sent, sentBefore + 1, 'told at once (a beat of its own), not at the next 50 ms beat');
    const e = await events.next(is('draining', 'node-d'), 1000, 'node-d draining');
    assert.equal(e.member.seq, sentBefore + 1, 'the balancer learnt it from that beat');
    assert.equal(e.member.state, 'draining');
    assert.equal(membership.newCallNodes.length, 0, 'a draining node takes no new call');
    assert.deepEqual(membership.aliveNodes.map((n) => n.id), ['node-d'], 'but it is alive');
    sender.draining = false;
    const u = await events.next(is('undrained', 'node-d'), 1000, 'node-d undrained');
    assert.equal(u.member.state, 'up');
    assert.deepEqual(membership.newCallNodes.map((n) => n.id), ['node-d']);
  });

  test('a signed drain command on the member\'s probe socket (as Balancer.drain sends it) drains the node; others are ignored', async () => {
    const { membership, events } = await startMembership();
    const sender = await startSender(membership, 'node-c');
    // Every assignment of sender.draining, in order (the command handler assigns it).
    const sets: boolean[] = [];
    const accessor = Object.getOwnPropertyDescriptor(HeartbeatSender.prototype, 'draining')!;
    Object.defineProperty(sender, 'draining', {
      get(this: HeartbeatSender) { return accessor.get!.call(this) as boolean; },
      set(this: HeartbeatSender, v: boolean) { sets.push(v); accessor.set!.call(this, v); },
    });
    const m = (await events.next(is('joined', 'node-c'), 1000, 'node-c to join')).member;
    assert.ok(m.probe !== null);
    const now = Date.now();
    m.probe.send(encodeCommand({ id: 'node-other', drain: true, ts: now }, SECRET)); // another node's
    m.probe.send(encodeCommand({ id: 'node-c', drain: true, ts: now }, 'wrong-secret')); // forged
    m.probe.send(encodeCommand({ id: 'node-c', drain: true, ts: now - 60_000 }, SECRET)); // replayed
    m.probe.send(encodeCommand({ id: 'node-c', drain: true, ts: now }, SECRET));
    await events.next(is('draining', 'node-c'), 1000, 'node-c draining');
    assert.equal(sender.draining, true);
    m.probe.send(encodeCommand({ id: 'node-c', drain: false, ts: Date.now() }, SECRET));
    await events.next(is('undrained', 'node-c'), 1000, 'node-c undrained');
    // The sender handles its datagrams in order: by now it has seen all six, and acted on the two valid ones only.
    assert.deepEqual(sets, [true, false]);
    assert.deepEqual(events.all.filter((e) => e.member.id === 'node-c').map((e) => e.type), ['joined', 'draining', 'undrained']);
  });

  test('stop() (socket closed) → dead within 300 ms, reason unreachable or silent', async () => {
    const { membership, events } = await startMembership();
    const sender = await startSender(membership, 'node-s');
    await events.next(is('joined', 'node-s'), 1000, 'node-s to join');
    const stoppedAt = Date.now();
    sender.stop();
    const e = await events.next(is('dead', 'node-s'), 300, 'node-s dead within 300 ms');
    const ms = Date.now() - stoppedAt;
    assert.equal(e.type, 'dead');
    assert.ok(e.type === 'dead' && (e.reason === 'unreachable' || e.reason === 'silent'), `reason ${e.type === 'dead' ? e.reason : ''}`);
    console.log(`# stopped sender detected dead after ${ms} ms (${e.type === 'dead' ? e.reason : ''})`);
    assert.equal(e.member.state, 'dead');
    assert.equal(membership.counters.deaths, 1);
    assert.deepEqual(membership.aliveNodes, []);
    assert.equal(membership.byAddress(HOST, 15060), e.member, 'a dead node\'s address is remembered (its calls fail over)');
  });

  test('a closed heartbeat socket is seen by the probes (ICMP port unreachable) long before silence would tell', async () => {
    const { membership, events } = await startMembership(10_000);
    const sender = await startSender(membership, 'node-p');
    await events.next(is('joined', 'node-p'), 1000, 'node-p to join');
    const stoppedAt = Date.now();
    sender.stop();
    const e = await events.next(is('dead', 'node-p'), 300, 'node-p dead within 300 ms although silence counts only after 10 s');
    assert.ok(e.type === 'dead' && e.reason === 'unreachable', `reason ${e.type === 'dead' ? e.reason : ''}`);
    console.log(`# probe saw the closed socket after ${Date.now() - stoppedAt} ms`);
  });

  test('a sender with the wrong secret is counted in refusedMac and never joins', async () => {
    const { membership, events } = await startMembership();
    const good = await startSender(membership, 'node-g');
    await startSender(membership, 'rogue', { secret: 'not-the-cluster-secret' });
    await events.next(is('joined', 'node-g'), 1000, 'node-g to join');
    // Wait (bounded) for three refused datagrams: datagrams are handled one at a time as they arrive, so once
    // they are counted, a join they could have caused would already have happened.
    const deadline = Date.now() + 2000;
    while (membership.counters.refusedMac < 3) {
      assert.ok(Date.now() < deadline, `refusedMac ${membership.counters.refusedMac} after 2 s`);
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(membership.get('rogue'), undefined);
    assert.deepEqual(membership.members.map((m) => m.id), ['node-g']);
    assert.ok(!events.all.some((e) => e.member.id === 'rogue'), 'no event for the rogue sender');
    assert.ok(membership.counters.heartbeats >= 1);
    assert.equal(membership.counters.refusedFormat, 0);
    assert.ok(good.sent >= 1);
  });

  test('a new HeartbeatSender with the same id (a new boot) → restarted, under the new boot', async () => {
    const { membership, events } = await startMembership();
    const first = await startSender(membership, 'node-r', { addresses: [{ protocol: 'UDP', host: HOST, port: 16001 }] });
    const m = (await events.next(is('joined', 'node-r'), 1000, 'node-r to join')).member;
    assert.equal(m.boot, first.boot);
    // The old process has been up for a few beats (seq >= 3) and still beats when the new one starts: a restart
    // faster than death detection. (Its beats leave before the new sender even binds, so they arrive first.)
    first.beat();
    first.beat();
    const second = await startSender(membership, 'node-r', { addresses: [{ protocol: 'UDP', host: HOST, port: 16002 }] });
    assert.notEqual(second.boot, first.boot);
    const r = await events.next(is('restarted', 'node-r'), 1000, 'node-r restarted');
    assert.equal(r.member, m, 'the same member, under its new boot');
    assert.equal(m.boot, second.boot);
    assert.equal(m.state, 'up');
    assert.deepEqual(m.addresses, [{ protocol: 'UDP', host: HOST, port: 16002 }]);
    assert.equal(membership.byAddress(HOST, 16002), m);
    assert.equal(membership.byAddress(HOST, 16001), undefined, 'the old boot\'s address is forgotten');
    const d = events.all.find((e) => e.type === 'dead' && e.member.id === 'node-r');
    assert.ok(d !== undefined && d.type === 'dead' && d.reason === 'restarted', 'the old boot was declared dead (restarted)');
    // Beats of the old boot (still running) must not take the member back: one more of each, the old one first.
    first.beat();
    second.beat();
    const target = second.sent; // the new boot's seq of that beat
    const deadline = Date.now() + 1000;
    while (!(m.boot === second.boot && m.seq >= target)) {
      assert.ok(Date.now() < deadline, `the new boot's beat ${target} seen (member on boot ${m.boot}, seq ${m.seq})`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    assert.deepEqual(events.all.filter((e) => e.member.id === 'node-r').map((e) => e.type), ['joined', 'dead', 'restarted'], 'one restart, no flapping');
  });

  test('an older or replayed heartbeat of the same boot is ignored (reordering on the wire)', async () => {
    const { membership, events } = await startMembership();
    const node = await rawNode();
    node.beat({ id: 'node-o', seq: 5, calls: 1 }, membership.port);
    const m = (await events.next(is('joined', 'node-o'), 1000, 'node-o to join')).member;
    node.beat({ id: 'node-o', seq: 4, draining: true, calls: 2 }, membership.port); // overtaken by seq 5
    node.beat({ id: 'node-o', seq: 5, draining: true, calls: 3 }, membership.port); // a replay of seq 5
    node.beat({ id: 'node-o', seq: 6, calls: 4 }, membership.port);
    // One socket, in order: once seq 6 is seen, the two before it were handled.
    const deadline = Date.now() + 1000;
    while (m.seq < 6) {
      assert.ok(Date.now() < deadline, `seq 6 seen (at ${m.seq})`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    assert.equal(m.calls, 4);
    assert.equal(m.state, 'up');
    assert.deepEqual(events.all.map((e) => e.type), ['joined'], 'neither the old nor the replayed beat changed anything');
  });

  test('a node silent past deadAfterMs is dead (silent); heard again under the same boot, it is back', async () => {
    const { membership, events } = await startMembership();
    const node = await rawNode(); // stays bound: no ICMP, only silence can tell
    node.beat({ id: 'node-q', seq: 1 }, membership.port);
    await events.next(is('joined', 'node-q'), 1000, 'node-q to join');
    const d = await events.next(is('dead', 'node-q'), 1000, 'node-q dead of silence');
    assert.ok(d.type === 'dead' && d.reason === 'silent');
    assert.ok(d.member.deadAt - d.member.lastSeen >= 250, `dead ${d.member.deadAt - d.member.lastSeen} ms after its last beat`);
    node.beat({ id: 'node-q', seq: 2 }, membership.port);
    const b = await events.next(is('back', 'node-q'), 1000, 'node-q back');
    assert.equal(b.member.state, 'up');
    assert.equal(b.member.deadReason, null);
  });

  test('a new boot after the old one died → restarted (not joined), alive again', async () => {
    const { membership, events } = await startMembership();
    const first = await startSender(membership, 'node-x');
    await events.next(is('joined', 'node-x'), 1000, 'node-x to join');
    first.stop();
    await events.next(is('dead', 'node-x'), 1000, 'node-x dead');
    const second = await startSender(membership, 'node-x');
    const r = await events.next(is('restarted', 'node-x'), 1000, 'node-x restarted');
    assert.equal(r.member.boot, second.boot);
    assert.equal(r.member.state, 'up');
    assert.equal(r.member.deadReason, null);
    assert.deepEqual(membership.aliveNodes.map((n) => n.id), ['node-x']);
  });
});


/** A fake node: a raw UDP socket that sends hand-made heartbeats and counts the balancer's probes. */
async function rawNode(): Promise<{ sock: dgram.Socket; probes: number[]; onProbe: (() => void) | null; beat: (a: Partial<NodeAnnouncement>, port: number) => void }> {
  const sock = dgram.createSocket('udp4');
  const node = {
    sock,
    probes: [] as number[],
    onProbe: null as (() => void) | null,
    beat: (a: Partial<NodeAnnouncement>, port: number): void => { sock.send(encodeHeartbeat(announcement({ ts: Date.now(), ...a }), SECRET), port, HOST); },
  };
  sock.on('message', (d) => {
    if (d.toString('latin1') !== 'SFPROBE') return;
    node.probes.push(performance.now());
    node.onProbe?.();
  });
  await new Promise<void>((resolve) => sock.bind(0, HOST, () => resolve()));
  closers.push(() => new Promise<void>((resolve) => sock.close(() => resolve())));
  return node;
}

describe('regressions found in review', () => {
  test('Balancer.start as `sipfleet balancer` / `up` call it probes each node every 50 ms, not every 1 ms', async () => {
    const balancer = await Balancer.start({
      external: [{ protocol: 'UDP', host: HOST, port: 0 }], internal: [{ protocol: 'UDP', host: HOST, port: 0 }],
      control: { host: HOST, port: 0 }, secret: SECRET, deadAfterMs: 250, // exactly the options runBalancer gives
    });
    closers.push(() => balancer.close());
    const node = await rawNode();
    const beats = setInterval(() => node.beat({ id: 'node-probed', seq: Math.floor(performance.now()) }, balancer.controlPort), 40);
    closers.push(() => clearInterval(beats));
    node.beat({ id: 'node-probed', seq: 1 }, balancer.controlPort);
    // Wait (bounded) for 6 probes: at one per 50 ms they span at least 5 × 50 ms.
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${node.probes.length} probes in 3 s`)), 3000);
      node.onProbe = () => { if (node.probes.length >= 6) { clearTimeout(timer); resolve(); } };
    });
    clearInterval(beats);
    const span = node.probes[5]! - node.probes[0]!;
    assert.ok(span >= 200, `6 probes within ${span.toFixed(1)} ms (one per ${(span / 5).toFixed(1)} ms; probeMs is 50)`);
  });

  test('a Membership given deadAfterMs: undefined (as Balancer.start passes it when unset) still finds a silent node dead', async () => {
    const membership = new Membership({ secret: SECRET, host: HOST, port: 0, deadAfterMs: undefined });
    await membership.start();
    closers.push(() => membership.close());
    const events = new Events(membership);
    const node = await rawNode(); // stays bound: no ICMP, only silence can tell
    node.beat({ id: 'node-silent', seq: 1 }, membership.port);
    await events.next(is('joined', 'node-silent'), 1000, 'node-silent to join');
    const d = await events.next(is('dead', 'node-silent'), DEFAULT_DEAD_AFTER_MS + 1000, `node-silent dead after ${DEFAULT_DEAD_AFTER_MS} ms of silence`);
    assert.ok(d.member.deadAt - d.member.lastSeen >= DEFAULT_DEAD_AFTER_MS, `dead ${d.member.deadAt - d.member.lastSeen} ms after its last beat`);
  });

  test('a late heartbeat of the previous boot (seq < 3) does not take a restarted member back', async () => {
    const { membership, events } = await startMembership();
    const node = await rawNode();
    node.beat({ id: 'node-flap', boot: 'old-boot', seq: 1 }, membership.port);
    await events.next(is('joined', 'node-flap'), 1000, 'joined');
    node.beat({ id: 'node-flap', boot: 'new-boot', seq: 1 }, membership.port);
    await events.next(is('restarted', 'node-flap'), 1000, 'restarted under the new boot');
    node.beat({ id: 'node-flap', boot: 'old-boot', seq: 2 }, membership.port); // sent before the restart, arriving late
    node.beat({ id: 'node-flap', boot: 'new-boot', seq: 2 }, membership.port);
    // Both datagrams come from one socket, in order: once the new boot's seq 2 is seen, the old one was handled.
    const deadline = Date.now() + 1000;
    while (!(membership.get('node-flap')!.boot === 'new-boot' && membership.get('node-flap')!.seq === 2)) {
      assert.ok(Date.now() < deadline, 'the new boot\'s second beat seen');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    assert.deepEqual(events.all.filter((e) => e.member.id === 'node-flap').map((e) => e.type), ['joined', 'dead', 'restarted'], 'no flap back to the old boot');
  });
});
