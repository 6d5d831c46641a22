import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import dgram from 'node:dgram';
import type { ListenAddress } from '../../sip/transport/types.ts';

/**
 * Node heartbeats: a node tells every balancer, several times a second, that it lives, where it listens and how
 * loaded it is. Each datagram is `SFHB1 <hmac-sha256 hex> <json>`, the HMAC taken over the JSON with the cluster
 * secret, so that nobody without the secret can add a node to the rotation (or drain one).
 */

/** A node's replication, as it reports it: totals since it started, and how far its replicas lag. */
export interface ReplicationLoad {
  writes: number;
  bytes: number;
  /** Calls continued here after their node died. */
  failovers: number;
  /** Store write latency, moving average (ms): how long a 2xx waits for its replica. */
  lagMs?: number;
  /** Calls whose last write failed and waits to be retried (their replica is behind). */
  pending?: number;
}

export interface NodeAnnouncement {
  /** Stable node id (the same after a restart). */
  id: string;
  /** New at every start: a restarted node is a new member under the same id. */
  boot: string;
  version: string;
  addresses: ListenAddress[];
  draining: boolean;
  /** Calls (application sessions) in progress. */
  calls: number;
  settingUp?: number;
  /** Of those, INVITEs not answered at all yet (no 1xx with a To tag): what a node's death loses under any strategy. */
  unanswered?: number;
  /** The node's own admin endpoint (metrics), if it has one. */
  admin?: string;
  /** In-dialog requests that reached this node for calls it did not hold (since its start). */
  unknownDialogs: number;
  replication?: ReplicationLoad;
  /** Past its overload limits: the node answers new calls 503, and balancers send them elsewhere. */
  overloaded?: boolean;
  /** Which limit (lag, calls, transactions, heap), while overloaded. */
  overloadReason?: string;
  pid: number;
  /** Increases with every heartbeat of one boot: an older datagram arriving late is ignored. */
  seq: number;
  /** Sender's clock, ms: a datagram replayed much later is refused. */
  ts: number;
}

export type HeartbeatErrorCode = 'HEARTBEAT_FORMAT' | 'HEARTBEAT_MAC' | 'HEARTBEAT_STALE';

export class HeartbeatError extends Error {
  readonly code: HeartbeatErrorCode;
  constructor(code: HeartbeatErrorCode, message: string) {
    super(message);
    this.name = 'HeartbeatError';
    this.code = code;
  }
}

const MAGIC = 'SFHB1 ';
const MAC_HEX = 64;
/** A heartbeat older (or further in the future) than this is refused: clocks of one cluster agree to this much. */
export const HEARTBEAT_MAX_SKEW_MS = 10_000;

function mac(secret: string, body: string): string {
  return createHmac('sha256', secret).update(body).digest('hex');
}

export function encodeHeartbeat(a: NodeAnnouncement, secret: string): Buffer {
  const body = JSON.stringify(a);
  return Buffer.from(`${MAGIC}${mac(secret, body)} ${body}`);
}

export function decodeHeartbeat(data: Buffer, secret: string, now = Date.now()): NodeAnnouncement {
  const text = data.toString('utf8');
  if (!text.startsWith(MAGIC) || text.charCodeAt(MAGIC.length + MAC_HEX) !== 0x20) throw new HeartbeatError('HEARTBEAT_FORMAT', 'not a heartbeat');
  const given = Buffer.from(text.slice(MAGIC.length, MAGIC.length + MAC_HEX), 'hex');
  const body = text.slice(MAGIC.length + MAC_HEX + 1);
  const expected = Buffer.from(mac(secret, body), 'hex');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new HeartbeatError('HEARTBEAT_MAC', 'wrong HMAC');
  let a: NodeAnnouncement;
  try {
    a = JSON.parse(body) as NodeAnnouncement;
  } catch {
    throw new HeartbeatError('HEARTBEAT_FORMAT', 'body is not JSON');
  }
  if (typeof a.id !== 'string' || a.id.length === 0 || typeof a.boot !== 'string' || typeof a.version !== 'string' ||
      !Array.isArray(a.addresses) || typeof a.seq !== 'number' || typeof a.ts !== 'number' || typeof a.calls !== 'number') {
    throw new HeartbeatError('HEARTBEAT_FORMAT', 'missing fields');
  }
  for (const addr of a.addresses) {
    if ((addr.protocol !== 'UDP' && addr.protocol !== 'TCP') || typeof addr.host !== 'string' || typeof addr.port !== 'number') {
      throw new HeartbeatError('HEARTBEAT_FORMAT', 'bad address');
    }
  }
  if ((a.overloaded !== undefined && typeof a.overloaded !== 'boolean') || (a.overloadReason !== undefined && typeof a.overloadReason !== 'string')) {
    throw new HeartbeatError('HEARTBEAT_FORMAT', 'bad overload fields');
  }
  if (Math.abs(now - a.ts) > HEARTBEAT_MAX_SKEW_MS) throw new HeartbeatError('HEARTBEAT_STALE', `sent ${now - a.ts} ms ago`);
  return a;
}

/**
 * A balancer's command to a node (sent to its heartbeat socket): start or stop draining, or take over what a dead
 * node owned (its persistent timers), sharing it with the other survivors.
 */
export interface NodeCommand {
  id: string;
  drain?: boolean;
  takeover?: { dead: string; survivors: string[] };
  ts: number;
}

const COMMAND_MAGIC = 'SFCM1 ';

export function encodeCommand(c: NodeCommand, secret: string): Buffer {
  const body = JSON.stringify(c);
  return Buffer.from(`${COMMAND_MAGIC}${mac(secret, body)} ${body}`);
}

/** The command in a datagram, or null when it is not one, is forged or is stale. */
export function decodeCommand(data: Buffer, secret: string, now = Date.now()): NodeCommand | null {
  const text = data.toString('utf8');
  if (!text.startsWith(COMMAND_MAGIC)) return null;
  const given = Buffer.from(text.slice(COMMAND_MAGIC.length, COMMAND_MAGIC.length + MAC_HEX), 'hex');
  const body = text.slice(COMMAND_MAGIC.length + MAC_HEX + 1);
  const expected = Buffer.from(mac(secret, body), 'hex');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
  try {
    const c = JSON.parse(body) as NodeCommand;
    if (typeof c.id !== 'string' || typeof c.ts !== 'number' || Math.abs(now - c.ts) > HEARTBEAT_MAX_SKEW_MS) return null;
    if (c.drain !== undefined && typeof c.drain !== 'boolean') return null;
    if (c.takeover !== undefined && (typeof c.takeover?.dead !== 'string' || !Array.isArray(c.takeover.survivors))) return null;
    return c;
  } catch {
    return null;
  }
}

export interface HeartbeatTarget {
  host: string;
  port: number;
}

export interface HeartbeatSenderOptions {
  id: string;
  version: string;
  addresses: ListenAddress[];
  /** The node's admin endpoint (URL), announced so operators and the dashboard find its metrics. */
  admin?: string;
  secret: string;
  targets: HeartbeatTarget[];
  intervalMs?: number;
  /** Local address to send from (the node's own, so a balancer's probe of it reaches this process). */
  bindHost?: string;
  /** Calls in progress and requests for unknown dialogs, read at each heartbeat. */
  load?: () => Pick<NodeAnnouncement, 'calls' | 'settingUp' | 'unanswered' | 'unknownDialogs' | 'replication' | 'overloaded' | 'overloadReason'>;
}

/**
 * Sends a node's heartbeats. The socket stays bound while the node lives: a balancer probes it, and when the
 * process dies the kernel answers those probes with ICMP port unreachable, which the balancer sees at once.
 */
export class HeartbeatSender {
  readonly boot = randomBytes(6).toString('hex');
  readonly #options: Required<Omit<HeartbeatSenderOptions, 'admin'>> & Pick<HeartbeatSenderOptions, 'admin'>;
  #socket: dgram.Socket | null = null;
  #timer: NodeJS.Timeout | null = null;
  #seq = 0;
  #draining = false;
  readonly #takenOver = new Set<string>();
  sent = 0;
  /** When the last heartbeat left (epoch ms; 0: none yet). */
  lastBeatAt = 0;
  /** A balancer says a node died: take over what it owned (called once per balancer notice). */
  onTakeover: ((dead: string, survivors: string[]) => void) | null = null;

  constructor(options: HeartbeatSenderOptions) {
    this.#options = { intervalMs: 50, bindHost: options.addresses[0]?.host ?? '127.0.0.1', load: () => ({ calls: 0, unknownDialogs: 0 }), ...options };
  }

  get draining(): boolean {
    return this.#draining;
  }

  /** Stops new calls coming to this node (in-progress calls stay); told to every balancer at once. */
  set draining(value: boolean) {
    if (value === this.#draining) return;
    this.#draining = value;
    this.beat();
  }

  async start(): Promise<void> {
    const host = this.#options.bindHost;
    const socket = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
    socket.on('error', () => { /* a balancer that is down: the next beat tries again */ });
    // Probes (their arrival is all they are for) and balancers' signed commands.
    socket.on('message', (data) => {
      const c = decodeCommand(data, this.#options.secret);
      if (c === null || c.id !== this.#options.id) return;
      if (c.drain !== undefined) this.draining = c.drain;
      if (c.takeover !== undefined && c.takeover.dead !== this.#options.id && !this.#takenOver.has(`${c.takeover.dead}|${c.ts}`)) {
        this.#takenOver.add(`${c.takeover.dead}|${c.ts}`);
        this.onTakeover?.(c.takeover.dead, c.takeover.survivors);
      }
    });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, host, () => { socket.off('error', reject); resolve(); });
    });
    this.#socket = socket;
    this.beat();
    this.#timer = setInterval(() => this.beat(), this.#options.intervalMs);
  }

  /** Sends one heartbeat now. */
  beat(): void {
    const socket = this.#socket;
    if (socket === null) return;
    const o = this.#options;
    this.lastBeatAt = Date.now();
    const load = o.load();
    const data = encodeHeartbeat({
      id: o.id, boot: this.boot, version: o.version, addresses: o.addresses, draining: this.#draining, ...(o.admin === undefined ? {} : { admin: o.admin }),
      calls: load.calls, settingUp: load.settingUp ?? 0, unanswered: load.unanswered ?? 0, unknownDialogs: load.unknownDialogs, ...(load.replication === undefined ? {} : { replication: load.replication }),
      ...(load.overloaded === true ? { overloaded: true, ...(load.overloadReason === undefined ? {} : { overloadReason: load.overloadReason }) } : {}), pid: process.pid, seq: ++this.#seq, ts: Date.now(),
    }, o.secret);
    for (const t of o.targets) socket.send(data, t.port, t.host);
    this.sent++;
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    this.#socket?.close();
    this.#socket = null;
  }
}
