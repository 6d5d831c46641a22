import { encodeCommand, type ReplicationLoad } from '../server/cluster/heartbeat.ts';
import type { TransportOptions } from '../sip/transport/transport-layer.ts';
import type { ListenAddress } from '../sip/transport/types.ts';
import { Forwarder, type NodeTraffic } from './forwarder.ts';
import { Membership, type MembershipEvent } from './membership.ts';
import { SourceLimiter, type SourceLimitCounters, type SourceLimitOptions } from './source-limits.ts';

export interface BalancerOptions {
  external: ListenAddress[];
  internal: ListenAddress[];
  /** Where nodes send heartbeats (UDP). */
  control: { host: string; port: number };
  /** Shared with the nodes: heartbeats and commands carry an HMAC made with it. */
  secret: string;
  deadAfterMs?: number;
  probeMs?: number;
  retryAfterS?: number;
  transport?: Omit<TransportOptions, 'listen' | 'admit'>;
  /** Per-source limits on the external side (messages/s per source address); null or rate 0: none. */
  sourceLimits?: SourceLimitOptions | null;
  /** One line per membership change (joined, dead, restarted, draining…), with how long detection took. */
  log?: (line: string) => void;
}

export interface NodeStatus {
  id: string;
  pid: number;
  boot: string;
  version: string;
  state: 'up' | 'draining' | 'dead';
  /** Past its overload limits (its heartbeat says): new calls go to other nodes while there are any. */
  overloaded: boolean;
  /** Which limit: lag, calls, transactions or heap. */
  overloadReason: string | null;
  sip: string[];
  calls: number;
  /** Calls being set up (initial INVITEs not answered yet). */
  settingUp: number;
  /** Of those, INVITEs the node has not answered at all yet (lost if it dies, whatever the strategy). */
  unanswered: number;
  unknownDialogs: number;
  /** Replication writes, bytes and failovers (calls continued here), since the node started; null: off. */
  replication: ReplicationLoad | null;
  traffic: NodeTraffic;
  deadReason: string | null;
  /** Since its last heartbeat (ms). */
  heartbeatAgeMs: number;
  /** Its own admin endpoint (metrics), when it announces one. */
  admin: string | null;
  /** New calls the balancer sent it over the last second. */
  callsPerSec: number;
}

export interface BalancerStatus {
  external: string[];
  internal: string[];
  control: string;
  nodes: NodeStatus[];
  counters: Forwarder['counters'] & Membership['counters'] & BalancerSourceCounters;
}

/** Per-source limits, in the status counters (all 0 when off). */
export interface BalancerSourceCounters {
  /** Messages refused on the external side before parsing (every reason). */
  externalRefused: number;
  /** A source sent faster than --source-rate (beyond its burst). */
  sourceRefusedRate: number;
  /** A new source while the table of tracked sources was full of active ones. */
  sourceRefusedTableFull: number;
  /** Idle sources forgotten to make room. */
  sourceEvicted: number;
  /** Source addresses tracked now (a gauge). */
  sourcesTracked: number;
}

const fmt = (l: ListenAddress): string => `${l.protocol.toLowerCase()}:${l.host.includes(':') ? `[${l.host}]` : l.host}:${l.port}`;

/** The balancer: membership (who is alive) and the forwarding plane, with the status an operator reads. */
export class Balancer {
  readonly membership: Membership;
  readonly forwarder: Forwarder;
  /** Null when per-source limits are off. */
  readonly sourceLimiter: SourceLimiter | null;
  readonly #options: BalancerOptions;

  private constructor(membership: Membership, forwarder: Forwarder, options: BalancerOptions, sourceLimiter: SourceLimiter | null) {
    this.membership = membership;
    this.forwarder = forwarder;
    this.sourceLimiter = sourceLimiter;
    this.#options = options;
    this.#rateTimer = setInterval(() => this.#sampleRates(), 1000);
    this.#rateTimer.unref();
  }

  /** New calls per second per node, over the last second. */
  readonly #rates = new Map<string, { newCalls: number; perSec: number }>();
  readonly #rateTimer: NodeJS.Timeout;

  #sampleRates(): void {
    for (const [id, t] of this.forwarder.traffic) {
      const r = this.#rates.get(id);
      if (r === undefined) this.#rates.set(id, { newCalls: t.newCalls, perSec: 0 });
      else {
        r.perSec = t.newCalls - r.newCalls;
        r.newCalls = t.newCalls;
      }
    }
  }

  static async start(options: BalancerOptions): Promise<Balancer> {
    // Made first: a bad limit fails before anything is bound.
    const limiter = options.sourceLimits == null || options.sourceLimits.rate === 0 ? null : new SourceLimiter(options.sourceLimits);
    const membership = new Membership({
      secret: options.secret, host: options.control.host, port: options.control.port,
      deadAfterMs: options.deadAfterMs, probeMs: options.probeMs,
    });
    await membership.start();
    let forwarder: Forwarder;
    try {
      forwarder = await Forwarder.start({
        external: options.external, internal: options.internal, membership, retryAfterS: options.retryAfterS,
        transport: options.transport, secret: options.secret,
        externalAdmit: limiter === null ? null : (source) => limiter.admit(source.host),
      });
    } catch (err) {
      await membership.close();
      throw err;
    }
    const b = new Balancer(membership, forwarder, options, limiter);
    const log = options.log;
    membership.onEvent = (e) => {
      log?.(describe(e));
      for (const l of b.#listeners) l(e);
      if (e.type === 'dead') b.#announceDeath(e.member.id);
      for (const w of [...b.#waiters]) w();
    };
    return b;
  }

  /**
   * Tells every live node that `dead` died, with the list of survivors: they share its persistent timers by
   * rendezvous hashing over that list. Sent a few times (UDP); a node acts on a notice once.
   */
  #announceDeath(dead: string): void {
    const survivors = this.membership.aliveNodes.map((m) => m.id);
    const ts = Date.now();
    const send = (): void => {
      for (const m of this.membership.aliveNodes) {
        try {
          m.probe?.send(encodeCommand({ id: m.id, takeover: { dead, survivors }, ts }, this.#options.secret));
        } catch {
          // its probe socket is closing: it is dying too, and will be announced in turn
        }
      }
    };
    send();
    for (const ms of [100, 300]) setTimeout(send, ms).unref();
  }

  readonly #listeners = new Set<(e: MembershipEvent) => void>();

  /** Calls `listener` at every membership change (a node joined, died, restarted, drained); returns the unsubscribe. */
  subscribe(listener: (e: MembershipEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => { this.#listeners.delete(listener); };
  }

  get controlPort(): number {
    return this.membership.port;
  }

  status(): BalancerStatus {
    const now = Date.now();
    return {
      external: this.forwarder.external.listening.map(fmt),
      internal: this.forwarder.internal.listening.map(fmt),
      control: `udp:${this.#options.control.host}:${this.membership.port}`,
      nodes: this.membership.members.map((m) => ({
        id: m.id, pid: m.pid, boot: m.boot, version: m.version, state: m.state, overloaded: !m.dead && m.overloaded, overloadReason: m.dead ? null : m.overloadReason, sip: m.addresses.map(fmt),
        calls: m.dead ? 0 : m.calls, settingUp: m.dead ? 0 : m.settingUp, unanswered: m.dead ? 0 : m.unanswered, unknownDialogs: m.unknownDialogs, replication: m.replication, traffic: this.forwarder.traffic.get(m.id) ?? { newCalls: 0, requests: 0, responses: 0 },
        deadReason: m.deadReason, heartbeatAgeMs: now - m.lastSeen, admin: m.admin, callsPerSec: this.#rates.get(m.id)?.perSec ?? 0,
      })).sort((a, b) => (a.id < b.id ? -1 : 1)),
      counters: { ...this.forwarder.counters, ...this.membership.counters, ...this.sourceCounters() },
    };
  }

  sourceCounters(): BalancerSourceCounters {
    const c: SourceLimitCounters | undefined = this.sourceLimiter?.counters;
    return {
      externalRefused: this.forwarder.external.counters.refused,
      sourceRefusedRate: c?.refusedRate ?? 0,
      sourceRefusedTableFull: c?.refusedTableFull ?? 0,
      sourceEvicted: c?.evicted ?? 0,
      sourcesTracked: this.sourceLimiter?.tracked ?? 0,
    };
  }

  /**
   * Asks a node to drain (or to take calls again): a signed command to its heartbeat socket. Resolves once the
   * node's heartbeat says it did, false when it is unknown, dead or does not answer within `timeoutMs`.
   */
  async drain(id: string, drain = true, timeoutMs = 2_000): Promise<boolean> {
    const m = this.membership.get(id);
    if (m === undefined || m.dead || m.probe === null) return false;
    const send = (): void => { m.probe?.send(encodeCommand({ id, drain, ts: Date.now() }, this.#options.secret)); };
    send();
    // The command travels over UDP: sent again until the node's heartbeat shows it took effect.
    const resend = setInterval(send, 100);
    try {
      await this.waitFor(() => m.dead || m.draining === drain, timeoutMs);
    } finally {
      clearInterval(resend);
    }
    return !m.dead && m.draining === drain;
  }

  readonly #waiters = new Set<() => void>();

  /** Resolves when `done()` holds, checked at each membership event; true, or false after `timeoutMs`. */
  waitFor(done: () => boolean, timeoutMs: number): Promise<boolean> {
    if (done()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const finish = (ok: boolean): void => {
        this.#waiters.delete(check);
        clearTimeout(timer);
        resolve(ok);
      };
      const check = (): void => { if (done()) finish(true); };
      const timer = setTimeout(() => finish(false), timeoutMs);
      this.#waiters.add(check);
    });
  }

  async close(): Promise<void> {
    clearInterval(this.#rateTimer);
    await this.forwarder.close();
    await this.membership.close();
  }
}

function describe(e: MembershipEvent): string {
  const m = e.member;
  const where = m.addresses.map(fmt).join(' ');
  switch (e.type) {
    case 'joined': return `node ${m.id} joined (${where}, version ${m.version}, boot ${m.boot}, pid ${m.pid})`;
    case 'restarted': return `node ${m.id} restarted (boot ${m.boot}, pid ${m.pid}, ${where})`;
    case 'back': return `node ${m.id} is back (heard again after ${Date.now() - m.deadAt} ms)`;
    case 'draining': return `node ${m.id} draining (${m.calls} calls in progress)`;
    case 'undrained': return `node ${m.id} takes new calls again`;
    case 'overloaded': return `node ${m.id} overloaded (${m.overloadReason ?? 'unknown'}): new calls go to other nodes`;
    case 'relieved': return `node ${m.id} no longer overloaded`;
    case 'dead': return `node ${m.id} dead (${e.reason}; last heartbeat ${m.deadAt - m.lastSeen} ms before)`;
  }
}
