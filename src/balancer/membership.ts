import type { ReplicationLoad } from '../server/cluster/heartbeat.ts';
import dgram from 'node:dgram';
import { hashString } from '../server/cluster/affinity.ts';
import { decodeHeartbeat, HeartbeatError, type NodeAnnouncement } from '../server/cluster/heartbeat.ts';
import type { ListenAddress, TransportProtocol } from '../sip/transport/types.ts';
import { failoverCandidates, newCallCandidates, notOverloaded, type RoutingNode } from './routing.ts';

export type MemberState = 'up' | 'draining' | 'dead';
export type DeathReason = 'silent' | 'unreachable' | 'connection' | 'restarted';

/** A node as the balancer knows it. */
export class Member implements RoutingNode {
  readonly id: string;
  readonly seed: number;
  boot = '';
  version = '';
  addresses: ListenAddress[] = [];
  draining = false;
  /** Past its overload limits (its heartbeat says): no new calls while others can take them. */
  overloaded = false;
  overloadReason: string | null = null;
  calls = 0;
  unknownDialogs = 0;
  settingUp = 0;
  unanswered = 0;
  admin: string | null = null;
  replication: ReplicationLoad | null = null;
  pid = 0;
  seq = 0;
  lastSeen = 0;
  dead = true;
  deadReason: DeathReason | null = null;
  deadAt = 0;
  /** Earlier boots of this id: their late datagrams are ignored. */
  readonly retiredBoots: string[] = [];
  /** When this boot was first heard. */
  upSince = 0;
  #probe: dgram.Socket | null = null;

  constructor(id: string) {
    this.id = id;
    this.seed = hashString(id);
  }

  get state(): MemberState {
    return this.dead ? 'dead' : this.draining ? 'draining' : 'up';
  }

  /** The node's address for a transport (its first one when it does not listen on that transport). */
  address(protocol: TransportProtocol): ListenAddress | undefined {
    return this.addresses.find((a) => a.protocol === protocol) ?? this.addresses[0];
  }

  toJSON(): object {
    return {
      id: this.id, boot: this.boot, version: this.version, state: this.state, draining: this.draining, overloaded: this.overloaded, calls: this.calls,
      pid: this.pid, addresses: this.addresses, lastSeen: this.lastSeen, deadReason: this.deadReason, deadAt: this.deadAt || null,
    };
  }

  setProbe(socket: dgram.Socket | null): void {
    this.#probe?.close();
    this.#probe = socket;
  }

  get probe(): dgram.Socket | null {
    return this.#probe;
  }
}

/**
 * A node silent this long is dead. A process that dies is seen at once (ICMP port unreachable, a refused
 * connection); silence only tells of a hung process or a lost host. Shorter, and a node whose heartbeats are held
 * up a few hundred ms (a busy box, a long GC pause) is declared dead while it still holds its calls: survivors
 * take them over and both hold them (seen at 250 ms on a 2-core box with five busy processes).
 */
export const DEFAULT_DEAD_AFTER_MS = 1000;

export interface MembershipOptions {
  secret: string;
  host: string;
  port: number;
  /** A node silent this long is dead (default DEFAULT_DEAD_AFTER_MS, with 50 ms heartbeats). */
  deadAfterMs?: number;
  /** How often each node's heartbeat socket is probed for ICMP port unreachable (default 50 ms). */
  probeMs?: number;
  /** How long a dead node's addresses are remembered, so its calls are recognised as failed over (default 1 h). */
  forgetAfterMs?: number;
}

export type MembershipEvent =
  | { type: 'joined' | 'restarted' | 'back' | 'draining' | 'undrained' | 'overloaded' | 'relieved'; member: Member }
  | { type: 'dead'; member: Member; reason: DeathReason };

/**
 * The set of nodes, learnt from their heartbeats. A node is dead when it is silent for `deadAfterMs`, at once when
 * a probe of its heartbeat socket meets ICMP port unreachable (the process is gone), or when the forwarder sees its
 * connection refused or reset. A heartbeat with another boot id is a restart: the member comes back under it.
 */
export class Membership {
  readonly #options: Required<MembershipOptions>;
  readonly #members = new Map<string, Member>();
  readonly #byAddress = new Map<string, Member>();
  #socket: dgram.Socket | null = null;
  #sweep: NodeJS.Timeout | null = null;
  #probeTimer: NodeJS.Timeout | null = null;
  #accepting: Member[] = [];
  #newCall: Member[] = [];
  #alive: Member[] = [];
  readonly counters = { heartbeats: 0, refusedMac: 0, refusedFormat: 0, refusedStale: 0, deaths: 0 };
  onEvent: ((event: MembershipEvent) => void) | null = null;
  #port = 0;

  constructor(options: MembershipOptions) {
    // `??`, not a spread: an option given as undefined keeps its default.
    this.#options = {
      ...options,
      deadAfterMs: options.deadAfterMs ?? DEFAULT_DEAD_AFTER_MS,
      probeMs: options.probeMs ?? 50,
      forgetAfterMs: options.forgetAfterMs ?? 3_600_000,
    };
  }

  async start(): Promise<void> {
    const { host, port } = this.#options;
    const socket = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
    socket.on('message', (data, rinfo) => this.#onDatagram(data, rinfo));
    socket.on('error', () => { /* unconnected UDP: nothing to do */ });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(port, host, () => { socket.off('error', reject); resolve(); });
    });
    this.#socket = socket;
    this.#port = socket.address().port;
    const sweepMs = Math.max(5, Math.min(25, Math.floor(this.#options.deadAfterMs / 8)));
    this.#sweep = setInterval(() => this.#checkSilence(), sweepMs);
    this.#probeTimer = setInterval(() => this.#probeAll(), this.#options.probeMs);
  }

  get port(): number {
    return this.#port;
  }

  get members(): Member[] {
    return [...this.#members.values()];
  }

  get(id: string): Member | undefined {
    return this.#members.get(id);
  }

  /** The member (alive or dead) listening on host:port. */
  byAddress(host: string, port: number): Member | undefined {
    return this.#byAddress.get(host + ':' + port);
  }

  /**
   * Nodes that take new calls: alive, not draining, of the highest version, and not overloaded. When every such
   * node is overloaded, all of them: each answers what it cannot take with 503 and Retry-After itself (its own
   * view of its load is fresher than its last heartbeat).
   */
  get newCallNodes(): readonly Member[] {
    return this.#newCall;
  }

  /** Nodes alive (draining or not). */
  get aliveNodes(): readonly Member[] {
    return this.#alive;
  }

  /** Where a dead node's calls go: accepting survivors of its version, else any accepting, else any alive. */
  failoverNodes(dead: Member | null): Member[] {
    const pool = this.#accepting.length > 0 ? this.#accepting : this.#alive;
    return failoverCandidates(pool, dead === null ? null : dead.version);
  }

  /** Declares a member dead now (e.g. its TCP connection was refused). */
  markDead(member: Member, reason: DeathReason): void {
    if (member.dead) return;
    member.dead = true;
    member.deadReason = reason;
    member.deadAt = Date.now();
    member.setProbe(null);
    this.counters.deaths++;
    this.#rebuild();
    this.onEvent?.({ type: 'dead', member, reason });
  }

  #onDatagram(data: Buffer, rinfo: dgram.RemoteInfo): void {
    let a: NodeAnnouncement;
    try {
      a = decodeHeartbeat(data, this.#options.secret);
    } catch (err) {
      const code = err instanceof HeartbeatError ? err.code : 'HEARTBEAT_FORMAT';
      if (code === 'HEARTBEAT_MAC') this.counters.refusedMac++;
      else if (code === 'HEARTBEAT_STALE') this.counters.refusedStale++;
      else this.counters.refusedFormat++;
      return;
    }
    this.counters.heartbeats++;
    let m = this.#members.get(a.id);
    let event: MembershipEvent['type'] | null = null;
    if (m === undefined) {
      m = new Member(a.id);
      this.#members.set(a.id, m);
      event = 'joined';
    } else if (m.boot !== a.boot) {
      if (m.retiredBoots.includes(a.boot)) return; // a late datagram of an earlier boot
      // A new boot: the old process is gone whatever we knew of it.
      if (!m.dead) this.markDead(m, 'restarted');
      m.retiredBoots.push(m.boot);
      if (m.retiredBoots.length > 8) m.retiredBoots.shift();
      event = 'restarted';
    } else if (a.seq <= m.seq) {
      return; // reordered or replayed
    } else if (m.dead) {
      event = 'back'; // silent for a while (a long pause), alive after all
    }
    const wasDraining = m.draining;
    const wasOverloaded = m.overloaded;
    if (event !== null) {
      for (const addr of m.addresses) if (this.#byAddress.get(addr.host + ':' + addr.port) === m) this.#byAddress.delete(addr.host + ':' + addr.port);
      m.boot = a.boot;
      m.addresses = a.addresses;
      for (const addr of a.addresses) this.#byAddress.set(addr.host + ':' + addr.port, m);
      m.dead = false;
      m.deadReason = null;
      m.upSince = Date.now();
      this.#openProbe(m, rinfo);
    }
    m.version = a.version;
    m.draining = a.draining;
    m.overloaded = a.overloaded === true;
    m.overloadReason = m.overloaded && typeof a.overloadReason === 'string' ? a.overloadReason.slice(0, 20) : null;
    m.calls = a.calls;
    m.settingUp = typeof a.settingUp === 'number' ? a.settingUp : 0;
    m.unanswered = typeof a.unanswered === 'number' ? a.unanswered : 0;
    m.admin = typeof a.admin === 'string' && a.admin.length < 200 ? a.admin : null;
    m.unknownDialogs = typeof a.unknownDialogs === 'number' ? a.unknownDialogs : 0;
    m.replication = typeof a.replication === 'object' && a.replication !== null ? a.replication : null;
    m.pid = a.pid;
    m.seq = a.seq;
    m.lastSeen = Date.now();
    if (event !== null || wasDraining !== a.draining || wasOverloaded !== m.overloaded) this.#rebuild();
    if (event !== null) this.onEvent?.({ type: event, member: m });
    if (event === null && wasDraining !== a.draining) this.onEvent?.({ type: a.draining ? 'draining' : 'undrained', member: m });
    if (wasOverloaded !== m.overloaded && (event === null || m.overloaded)) this.onEvent?.({ type: m.overloaded ? 'overloaded' : 'relieved', member: m });
  }

  /** A socket connected to the node's heartbeat socket: when the process dies, the kernel refuses our probes. */
  #openProbe(m: Member, rinfo: dgram.RemoteInfo): void {
    const socket = dgram.createSocket(rinfo.family === 'IPv6' ? 'udp6' : 'udp4');
    const boot = m.boot;
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED' && m.boot === boot) this.markDead(m, 'unreachable');
    });
    socket.on('message', () => {});
    socket.connect(rinfo.port, rinfo.address);
    m.setProbe(socket);
  }

  #probeAll(): void {
    const ping = PROBE;
    for (const m of this.#alive) {
      const p = m.probe;
      if (p === null) continue;
      try {
        p.send(ping);
      } catch {
        // not connected yet
      }
    }
  }

  #checkSilence(): void {
    const now = Date.now();
    const limit = this.#options.deadAfterMs;
    for (const m of this.#alive) if (now - m.lastSeen > limit) this.markDead(m, 'silent');
    for (const m of this.#members.values()) {
      if (m.dead && now - Math.max(m.deadAt, m.lastSeen) > this.#options.forgetAfterMs) {
        this.#members.delete(m.id);
        for (const addr of m.addresses) if (this.#byAddress.get(addr.host + ':' + addr.port) === m) this.#byAddress.delete(addr.host + ':' + addr.port);
      }
    }
  }

  #rebuild(): void {
    const alive: Member[] = [];
    const accepting: Member[] = [];
    for (const m of this.#members.values()) {
      if (m.dead) continue;
      alive.push(m);
      if (!m.draining) accepting.push(m);
    }
    this.#alive = alive;
    this.#accepting = accepting;
    this.#newCall = notOverloaded(newCallCandidates(accepting));
  }

  async close(): Promise<void> {
    if (this.#sweep !== null) clearInterval(this.#sweep);
    if (this.#probeTimer !== null) clearInterval(this.#probeTimer);
    for (const m of this.#members.values()) m.setProbe(null);
    const s = this.#socket;
    this.#socket = null;
    if (s !== null) await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}

const PROBE = Buffer.from('SFPROBE');
