/**
 * Redis backend (ioredis): standalone, TLS, Sentinel or Cluster, shared by every node of a sipfleet cluster.
 *
 * One hash per AOR, PREFIX + 'loc:{' + aor + '}': field = bindingKey(), value = the binding as JSON. The key
 * is one key per AOR, so a Cluster keeps an AOR in one slot and every script below touches a single key.
 * Writes go through Lua scripts, so an upsert and the key's TTL update are one atomic step: two nodes
 * registering contacts of the same AOR at once each add their own field and neither loses the other's, and
 * the TTL always covers the latest expiry (Redis then drops a fully expired AOR by itself). The periodic
 * purge deletes expired fields of AORs that still have live ones.
 */
import { isIP } from 'node:net';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { credentialFrom, ha1sFor, type Credential, type CredentialStore, type Ha1Values } from './credentials.ts';
import { StoreError, toStoreError } from './errors.ts';
import { bindingKey, compareBindings, normalizeBinding, type Binding, type LocationStore } from './location.ts';
import { checkSessionKey, type SessionEntry, type SessionStore, type StoredTimer } from './sessions.ts';
import { resolveOptions, type ResolvedOptions, type StoreOptions, type Stores } from './options.ts';
import { startPurger, type Purger } from './purger.ts';
import type { HostPort, StoreConfig } from './url.ts';

export type RedisConfig = Extract<StoreConfig, { kind: 'redis' }>;
type SentinelConfig = Extract<RedisConfig, { mode: 'sentinel' }>;
type Client = Redis | Cluster;

// Sets the AOR key's expiry to its latest binding's, or deletes it when none is live. Shared by the scripts.
const RETIME = `
local function retime(key, now)
  local latest = 0
  for _, v in ipairs(redis.call('HVALS', key)) do
    local e = cjson.decode(v).expiresAt
    if e > latest then latest = e end
  end
  if latest > now then
    redis.call('PEXPIREAT', key, string.format('%.0f', latest))
  else
    redis.call('DEL', key)
  end
end
`;

const SCRIPTS = {
  // KEYS[1] AOR key; ARGV field, binding JSON, now.
  sipfleetLocPut: `${RETIME}
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
retime(KEYS[1], tonumber(ARGV[3]))
return 1`,
  // ARGV contact, now. Returns how many live bindings were removed.
  sipfleetLocRemove: `${RETIME}
local now, live, removed = tonumber(ARGV[2]), 0, 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local b = cjson.decode(all[i + 1])
  if b.contact == ARGV[1] then
    redis.call('HDEL', KEYS[1], all[i])
    removed = removed + 1
    if b.expiresAt > now then live = live + 1 end
  end
end
if removed > 0 then retime(KEYS[1], now) end
return live`,
  // ARGV now. Deletes the AOR; returns how many live bindings it had.
  sipfleetLocRemoveAll: `
local now, live = tonumber(ARGV[1]), 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
  if cjson.decode(v).expiresAt > now then live = live + 1 end
end
redis.call('DEL', KEYS[1])
return live`,
  // ARGV now. Deletes expired fields; returns how many.
  sipfleetLocPurge: `${RETIME}
local now, n = tonumber(ARGV[1]), 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if cjson.decode(all[i + 1]).expiresAt <= now then
    redis.call('HDEL', KEYS[1], all[i])
    n = n + 1
  end
end
if n > 0 then retime(KEYS[1], now) end
return n`,
  // ARGV data, expected version, ttl ms. Returns the new version, or -1 when the stored one is not `expected`.
  sipfleetSessPut: `
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[2]) then return -1 end
redis.call('HSET', KEYS[1], 'd', ARGV[1], 'v', v + 1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return v + 1`,
  // KEYS: sessions to write, then sessions to delete; ARGV[1]: how many to write, then data, expected version and
  // ttl ms of each in turn. Returns each write's new version, or -1 (not at the expected version: nothing written).
  sipfleetSessPutMany: `
local n = tonumber(ARGV[1])
local out = {}
for i = 1, n do
  local a = 1 + (i - 1) * 3
  local v = tonumber(redis.call('HGET', KEYS[i], 'v') or '0')
  if v ~= tonumber(ARGV[a + 2]) then
    out[i] = -1
  else
    redis.call('HSET', KEYS[i], 'd', ARGV[a + 1], 'v', v + 1)
    redis.call('PEXPIRE', KEYS[i], ARGV[a + 3])
    out[i] = v + 1
  end
end
if #KEYS > n then redis.call('DEL', unpack(KEYS, n + 1, #KEYS)) end
return out`,
  // ARGV owner. Deletes the timer if that owner holds it; returns 1 when deleted.
  sipfleetTimerTake: `
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1`,
  // ARGV from, to. Moves the timer between owners; returns 1 when moved.
  sipfleetTimerClaim: `
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[2])
return 1`,
} as const;

interface Scripts {
  sipfleetTimerTake(key: string, owner: string): Promise<number>;
  sipfleetTimerClaim(key: string, from: string, to: string): Promise<number>;
  sipfleetSessPut(key: string, data: string, expected: number, ttlMs: number): Promise<number>;
  sipfleetSessPutMany(numKeys: number, ...keysThenArgs: Array<string | number>): Promise<number[]>;
  sipfleetLocPut(key: string, field: string, json: string, now: number): Promise<number>;
  sipfleetLocRemove(key: string, contact: string, now: number): Promise<number>;
  sipfleetLocRemoveAll(key: string, now: number): Promise<number>;
  sipfleetLocPurge(key: string, now: number): Promise<number>;
}

/** Escapes Redis glob metacharacters, so a key prefix is matched literally by SCAN. */
const globEscape = (s: string): string => s.replace(/[*?[\]\\]/g, '\\$&');

const describe = (cfg: RedisConfig): string => {
  const hp = (n: HostPort): string => (n.host.includes(':') ? `[${n.host}]:${n.port}` : `${n.host}:${n.port}`);
  if (cfg.mode === 'standalone') return `Redis at ${hp(cfg.node)}${cfg.tls ? ' (TLS)' : ''} db ${cfg.db}`;
  if (cfg.mode === 'sentinel') return `Redis master "${cfg.masterName}" via Sentinel ${cfg.sentinels.map(hp).join(',')}`;
  return `Redis Cluster ${cfg.nodes.map(hp).join(',')}`;
};

/** An operation waiting for Redis, failed by the watchdog once it has waited operationTimeoutMs. */
interface InFlight {
  readonly started: number;
  readonly reject: (err: Error) => void;
}

/** The connection, shared by the location and credential stores of one openRedisStores() call. */
class RedisHandle {
  closed = false;
  readonly scripts: Scripts;
  /**
   * Operations in flight, checked by one interval: ioredis' commandTimeout arms a timer per command, which cost a
   * fifth of the client's CPU per session write.
   */
  readonly #inFlight = new Set<InFlight>();
  readonly #watchdog: NodeJS.Timeout;

  constructor(
    readonly client: Client,
    readonly where: string,
    readonly prefix: string,
    readonly timeoutMs: number,
  ) {
    this.scripts = client as unknown as Scripts;
    this.#watchdog = setInterval(() => this.#expire(), Math.max(10, Math.min(250, timeoutMs / 4)));
    this.#watchdog.unref();
  }

  #expire(): void {
    const oldest = performance.now() - this.timeoutMs;
    for (const op of this.#inFlight) {
      if (op.started > oldest) continue;
      this.#inFlight.delete(op);
      op.reject(new Error(`no answer within ${this.timeoutMs} ms`));
    }
  }

  async run<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new StoreError('STORE_CLOSED', 'Redis store is closed');
    try {
      return await new Promise<T>((resolve, reject) => {
        const op: InFlight = { started: performance.now(), reject };
        this.#inFlight.add(op);
        fn().then((v) => {
          this.#inFlight.delete(op);
          resolve(v);
        }, (err: unknown) => {
          this.#inFlight.delete(op);
          reject(err);
        });
      });
    } catch (err) {
      throw toStoreError(err, 'STORE_UNAVAILABLE', `Redis ${what} failed (${this.where})`);
    }
  }

  /** Stops the watchdog (the store is closing). */
  stop(): void {
    clearInterval(this.#watchdog);
  }

  /** Every key matching PREFIX + pattern, in batches; on a Cluster, from every master. */
  async *scan(pattern: string): AsyncGenerator<string[]> {
    const masters = this.client instanceof Cluster ? this.client.nodes('master') : [this.client];
    for (const node of masters) {
      for await (const keys of node.scanStream({ match: globEscape(this.prefix) + pattern, count: 500 })) {
        if ((keys as string[]).length > 0) yield keys as string[];
      }
    }
  }
}

export class RedisLocationStore implements LocationStore {
  private readonly h: RedisHandle;
  private readonly purger: Purger;
  private closed = false;

  constructor(h: RedisHandle, o: ResolvedOptions) {
    this.h = h;
    this.purger = startPurger(() => this.purgeExpired(), o.purgeIntervalMs, o.onError);
  }

  private key(aor: string): string {
    return `${this.h.prefix}loc:{${aor}}`;
  }

  async put(binding: Binding): Promise<void> {
    const b = normalizeBinding(binding);
    await this.exec('put', () => this.h.scripts.sipfleetLocPut(this.key(b.aor), bindingKey(b), JSON.stringify(b), Date.now()));
  }

  async remove(aor: string, contact: string): Promise<boolean> {
    return (await this.exec('remove', () => this.h.scripts.sipfleetLocRemove(this.key(aor), contact, Date.now()))) > 0;
  }

  async removeAll(aor: string): Promise<number> {
    return this.exec('removeAll', () => this.h.scripts.sipfleetLocRemoveAll(this.key(aor), Date.now()));
  }

  async lookup(aor: string): Promise<Binding[]> {
    const values = await this.exec('lookup', () => this.h.client.hvals(this.key(aor)));
    const now = Date.now();
    return values
      .map((v) => JSON.parse(v) as Binding)
      .filter((b) => b.expiresAt > now)
      .sort(compareBindings);
  }

  async purgeExpired(): Promise<number> {
    return this.exec('purge', async () => {
      let n = 0;
      for await (const keys of this.h.scan('loc:*')) {
        const now = Date.now();
        const counts = await Promise.all(keys.map((k) => this.h.scripts.sipfleetLocPurge(k, now)));
        for (const c of counts) n += c;
      }
      return n;
    });
  }

  async count(): Promise<number> {
    return this.exec('count', async () => {
      let n = 0;
      for await (const keys of this.h.scan('loc:*')) {
        const now = Date.now();
        const all = await Promise.all(keys.map((k) => this.h.client.hvals(k)));
        for (const values of all) for (const v of values) if ((JSON.parse(v) as Binding).expiresAt > now) n++;
      }
      return n;
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.purger.stop();
  }

  private exec<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new StoreError('STORE_CLOSED', 'location store is closed'));
    return this.h.run(what, fn);
  }
}

export class RedisCredentialStore implements CredentialStore {
  constructor(private readonly h: RedisHandle) {}

  // Each part %-encoded: no ':' can make two pairs collide, no '{' can form a hash tag.
  private key(username: string, realm: string): string {
    return `${this.h.prefix}cred:${encodeURIComponent(realm)}:${encodeURIComponent(username)}`;
  }

  async get(username: string, realm: string): Promise<Credential | null> {
    const f = await this.h.run('credential get', () => this.h.client.hgetall(this.key(username, realm)));
    if (f.md5 === undefined && f.sha256 === undefined) return null;
    return credentialFrom(username, realm, f.md5 ?? null, f.sha256 ?? null);
  }

  async set(username: string, realm: string, secret: string | Ha1Values): Promise<void> {
    const h = ha1sFor(username, realm, secret);
    const fields: Record<string, string> = {};
    if (h.ha1Md5 !== undefined) fields.md5 = h.ha1Md5;
    if (h.ha1Sha256 !== undefined) fields.sha256 = h.ha1Sha256;
    const key = this.key(username, realm);
    // DEL first, in the same transaction, so a replaced credential keeps no HA1 of the old secret.
    await this.h.run('credential set', () => this.h.client.multi().del(key).hset(key, fields).exec());
  }

  async delete(username: string, realm: string): Promise<boolean> {
    return (await this.h.run('credential delete', () => this.h.client.del(this.key(username, realm)))) > 0;
  }
}

interface PendingPut {
  key: string;
  data: string;
  expected: number;
  ttlMs: number;
  resolve: (version: number) => void;
  reject: (err: unknown) => void;
}

/** Puts gathered into one script call at most (a bigger batch is sent at once and a new one started). */
const MAX_BATCH = 64;
/** Keys deleted by one command at most. */
const MAX_DELETES = 256;
/**
 * How long deletes wait for a put to travel with. Every Redis round trip wakes the event loop once more, and on a
 * busy box that wake-up (a context switch) costs more than the command: an ended call's record can wait this long.
 */
const DELETE_WAIT_MS = 25;

interface PendingDelete {
  keys: string[];
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * Sessions as hashes (d: data, v: version) with a TTL; the CAS is one Lua script, atomic on every topology.
 * Puts made in one turn of the event loop (the calls whose messages arrived together) go to Redis as one script
 * call, and the deletes of ended calls ride along with the next one (or go alone after DELETE_WAIT_MS): a replica
 * per call costs one round trip per batch, not one per write. While a batch is in flight the next one gathers
 * (group commit), and batches start at most one per `batchWindowMs` (a commit delay, as PostgreSQL's commit_delay
 * or Kafka's linger.ms): a put after a quiet spell goes at once, but under load each waits up to the window for
 * the calls behind it, so the round trips per second stay bounded whatever the call rate.
 * Not on a Cluster, whose keys of one script must share a slot: there, one command per put and per deleted key.
 */
export class RedisSessionStore implements SessionStore {
  #batch: PendingPut[] = [];
  #deletes: PendingDelete[] = [];
  #deleteCount = 0;
  #deleteTimer: NodeJS.Timeout | null = null;
  /**
   * A flush waits for the end of this turn (setImmediate) or for the window to end (setTimeout); a batch waits for
   * its answer. Puts meanwhile join the next.
   */
  #scheduled = false;
  #inFlight = false;
  /** When the last batch of puts left (performance.now()). */
  #lastBatchAt = -Infinity;
  readonly #batching: boolean;
  readonly #flushScheduled = (): void => {
    this.#scheduled = false;
    if (!this.#inFlight) this.#flush();
  };

  constructor(
    private readonly h: RedisHandle,
    private readonly batchWindowMs: number,
  ) {
    this.#batching = !(h.client instanceof Cluster);
  }

  #putNow(p: PendingPut): Promise<unknown> {
    return this.h.run('session put', () => this.h.scripts.sipfleetSessPut(p.key, p.data, p.expected, p.ttlMs)).then(p.resolve, p.reject);
  }

  /** The next batch goes after this turn's I/O callbacks and the window, or when the one in flight is answered. */
  #schedule(): void {
    if (this.#scheduled || this.#inFlight) return;
    this.#scheduled = true;
    const wait = this.#lastBatchAt + this.batchWindowMs - performance.now();
    // Under 1 ms a timer would wait the same as the next turn (timers have ms resolution).
    if (wait >= 1) setTimeout(this.#flushScheduled, wait);
    else setImmediate(this.#flushScheduled);
  }

  /** A batch of puts was answered: the puts gathered meanwhile go next. */
  readonly #answered = (): void => {
    this.#inFlight = false;
    if (this.#batch.length > 0) this.#schedule();
  };

  /** Sends the waiting puts and deletes: one script call (or one DEL when only deletes wait). */
  #flush(): void {
    const batch = this.#batch;
    const deletes = this.#deletes;
    this.#batch = [];
    this.#deletes = [];
    this.#deleteCount = 0;
    if (this.#deleteTimer !== null) {
      clearTimeout(this.#deleteTimer);
      this.#deleteTimer = null;
    }
    if (batch.length === 0 && deletes.length === 0) return;
    const settleDeletes = (err: unknown): void => { for (const d of deletes) if (err === null) d.resolve(); else d.reject(err); };
    if (batch.length === 0) {
      const keys = deletes.flatMap((d) => d.keys);
      this.h.run('session delete', () => this.h.client.del(...keys)).then(() => settleDeletes(null), settleDeletes);
      return;
    }
    this.#inFlight = true;
    this.#lastBatchAt = performance.now();
    const args: Array<string | number> = batch.map((p) => p.key);
    for (const d of deletes) args.push(...d.keys);
    const numKeys = args.length;
    args.push(batch.length);
    for (const p of batch) args.push(p.data, p.expected, p.ttlMs);
    this.h.run('session put', () => this.h.scripts.sipfleetSessPutMany(numKeys, ...args)).then(
      (versions) => {
        for (let i = 0; i < batch.length; i++) batch[i]!.resolve(Number(versions[i]));
        settleDeletes(null);
      },
      (err: unknown) => {
        for (const p of batch) p.reject(err);
        settleDeletes(err);
      },
    ).then(this.#answered);
  }

  /** Sends what waits now (before the connection closes). */
  flushPending(): void {
    this.#flush();
  }

  private key(key: string): string {
    return `${this.h.prefix}sess:${key}`;
  }

  async put(key: string, data: string, expected: number, ttlMs: number): Promise<number> {
    checkSessionKey(key);
    const v = await new Promise<number>((resolve, reject) => {
      const p: PendingPut = { key: this.key(key), data, expected, ttlMs: Math.max(1, Math.round(ttlMs)), resolve, reject };
      if (!this.#batching) return void this.#putNow(p);
      this.#batch.push(p);
      // After this turn's I/O callbacks, so the puts of every message read in this turn go together; a full
      // batch goes at once, even beside one in flight.
      if (this.#batch.length >= MAX_BATCH) this.#flush();
      else this.#schedule();
    });
    if (v < 0) throw new StoreError('STORE_CONFLICT', `session ${key} was not at version ${expected}`);
    return v;
  }

  async get(key: string): Promise<SessionEntry | null> {
    checkSessionKey(key);
    const f = await this.h.run('session get', () => this.h.client.hgetall(this.key(key)));
    if (f.d === undefined || f.v === undefined) return null;
    return { data: f.d, version: Number(f.v) };
  }

  async delete(key: string): Promise<void> {
    checkSessionKey(key);
    await this.h.run('session delete', () => this.h.client.del(this.key(key)));
  }

  async deleteMany(keys: readonly string[]): Promise<void> {
    for (const k of keys) checkSessionKey(k);
    if (keys.length === 0) return;
    if (this.#batching) {
      if (this.h.closed) throw new StoreError('STORE_CLOSED', 'Redis store is closed');
      return new Promise<void>((resolve, reject) => {
        this.#deletes.push({ keys: keys.map((k) => this.key(k)), resolve, reject });
        this.#deleteCount += keys.length;
        if (this.#deleteCount >= MAX_DELETES) this.#flush();
        else if (this.#deleteTimer === null && this.#batch.length === 0) this.#deleteTimer = setTimeout(() => this.#flush(), DELETE_WAIT_MS);
      });
    }
    const client = this.h.client;
    // One DEL of many keys, but not across a Cluster's slots (CROSSSLOT): there, one DEL per key (pipelined).
    if (client instanceof Cluster) await this.h.run('session delete', () => Promise.all(keys.map((k) => client.del(this.key(k)))));
    else await this.h.run('session delete', () => client.del(...keys.map((k) => this.key(k))));
  }

  // A timer is a hash; an owner's index is a set, kept loosely (each entry is checked against the hash, whose
  // owner field is the truth): one-key Lua scripts work on every topology, Cluster included.
  private timerKey(id: string): string {
    return `${this.h.prefix}timer:${id}`;
  }

  private ownerKey(owner: string): string {
    return `${this.h.prefix}timers-of:${encodeURIComponent(owner)}`;
  }

  async putTimer(t: StoredTimer): Promise<void> {
    await this.h.run('timer put', async () => {
      await this.h.client.hset(this.timerKey(t.id), { session: t.session, owner: t.owner, fireAt: String(t.fireAt), key: String(t.key) });
      await this.h.client.pexpireat(this.timerKey(t.id), t.fireAt + 86_400_000); // nothing outlives its timer by a day
      await this.h.client.sadd(this.ownerKey(t.owner), t.id);
    });
  }

  async takeTimer(id: string, owner: string): Promise<boolean> {
    const taken = await this.h.run('timer take', () => this.h.scripts.sipfleetTimerTake(this.timerKey(id), owner));
    if (taken === 1) await this.h.run('timer index', () => this.h.client.srem(this.ownerKey(owner), id));
    return taken === 1;
  }

  async deleteTimer(id: string): Promise<void> {
    await this.h.run('timer delete', () => this.h.client.del(this.timerKey(id)));
  }

  async timersOf(owner: string): Promise<StoredTimer[]> {
    return this.h.run('timer list', async () => {
      const ids = await this.h.client.smembers(this.ownerKey(owner));
      const out: StoredTimer[] = [];
      for (const id of ids) {
        const f = await this.h.client.hgetall(this.timerKey(id));
        if (f.owner === owner) out.push({ id, session: f.session!, owner, fireAt: Number(f.fireAt), key: Number(f.key) });
        else await this.h.client.srem(this.ownerKey(owner), id); // fired, cancelled or moved
      }
      return out;
    });
  }

  async claimTimer(id: string, from: string, to: string): Promise<boolean> {
    const moved = await this.h.run('timer claim', () => this.h.scripts.sipfleetTimerClaim(this.timerKey(id), from, to));
    if (moved === 1) {
      await this.h.run('timer index', async () => {
        await this.h.client.sadd(this.ownerKey(to), id);
        await this.h.client.srem(this.ownerKey(from), id);
      });
    }
    return moved === 1;
  }
}

/** The commands of a call's replication: one per batch of writes, sent as they are. */
const SESSION_HOT_COMMANDS = ['sipfleetSessPut', 'sipfleetSessPutMany', 'del'];

function createClient(cfg: RedisConfig, o: ResolvedOptions, established: () => boolean): Client {
  // Until the first connection is up, give up at once (openStores reports it); afterwards reconnect forever
  // with a capped backoff, failing individual operations fast meanwhile (maxRetriesPerRequest, the RedisHandle watchdog).
  const backoff = (times: number): number | null => (established() ? Math.min(100 * times, 2000) : null);
  const common: RedisOptions = {
    lazyConnect: true,
    connectTimeout: o.connectTimeoutMs,
    maxRetriesPerRequest: 1,
    enableAutoPipelining: true,
    // The session store batches its own writes (RedisSessionStore): through the auto-pipeline each would also
    // build a pipeline object per event-loop turn, which doubled the client's CPU per write (bench/redis-client).
    autoPipeliningIgnoredCommands: SESSION_HOT_COMMANDS,
    ...(o.clientName !== undefined ? { connectionName: o.clientName } : {}),
    ...(cfg.username !== undefined ? { username: cfg.username } : {}),
    ...(cfg.password !== undefined ? { password: cfg.password } : {}),
  };
  // After a Sentinel failover the old master turns replica; reconnecting finds the new one.
  const reconnectOnError = (err: Error): 2 | false => (err.message.startsWith('READONLY') ? 2 : false);
  if (cfg.mode === 'cluster') {
    const options: ClusterOptions = {
      lazyConnect: true,
      enableAutoPipelining: true,
      clusterRetryStrategy: backoff,
      slotsRefreshTimeout: o.connectTimeoutMs,
      redisOptions: common,
    };
    return new Cluster(cfg.nodes, options);
  }
  if (cfg.mode === 'sentinel') {
    return new Redis({
      ...common,
      sentinels: cfg.sentinels,
      name: cfg.masterName,
      role: 'master',
      // Not ioredis' failoverDetector: its +switch-master handler can end the client for good (see followFailovers).
      failoverDetector: false,
      db: cfg.db,
      retryStrategy: backoff,
      sentinelRetryStrategy: backoff,
      reconnectOnError,
    });
  }
  return new Redis({
    ...common,
    host: cfg.node.host,
    port: cfg.node.port,
    db: cfg.db,
    retryStrategy: backoff,
    reconnectOnError,
    ...(cfg.tls ? { tls: { servername: cfg.node.host } } : {}),
  });
}

/** The connection's peer is host:port (a hostname, which the socket knows only resolved, matches on the port). */
function connectedTo(client: Redis, host: string, port: number): boolean {
  const stream = client.stream as { remoteAddress?: string; remotePort?: number } | undefined;
  if (stream?.remotePort !== port) return false;
  if (isIP(host) === 0) return true;
  return stream.remoteAddress?.replace(/^::ffff:(?=\d+\.)/, '') === host;
}

/**
 * Follows Sentinel's +switch-master announcements of the master, so the client leaves a demoted primary at once: a
 * manual failover leaves the old primary up and writable for seconds, and what is written there meanwhile is lost
 * when it resyncs. (Losing the connection needs nothing of this: the client then asks Sentinel anew.)
 *
 * Why not ioredis' own `failoverDetector`: it drops the connection through the connector, which also aborts a
 * connection attempt in progress; and an attempt aborted while asking Sentinel for the master makes ioredis end the
 * client, which never reconnects again. That is what a SIGKILLed primary gives: the client retries every few hundred
 * ms, each attempt asking Sentinel first, and the announcement comes during one of them often enough on a loaded
 * machine. So here the client is only disconnected (then reconnects) when it is connected; an announcement made
 * while it is between connections is checked once the next connection is up, against the master announced.
 */
function followFailovers(client: Redis, cfg: SentinelConfig, o: ResolvedOptions): () => void {
  let announced: { host: string; port: number } | null = null;
  let dropped: unknown = null; // the connection being closed (each Sentinel announces the switch: one close is enough)
  const check = (): void => {
    if (announced === null || (client.status !== 'ready' && client.status !== 'connect')) return;
    const { host, port } = announced;
    announced = null; // once per announcement: a stale one can never bounce the client between servers
    if (connectedTo(client, host, port) || client.stream === dropped) return;
    dropped = client.stream;
    client.disconnect(true);
  };
  client.on('ready', check);
  // Every Sentinel given (each announces the switch once it knows of it: whichever hears first wins).
  const watchers = cfg.sentinels.map(({ host, port }) => {
    const w = new Redis({
      host, port, lazyConnect: true, connectTimeout: o.connectTimeoutMs, enableReadyCheck: false,
      // A Sentinel down now may be back later: retry forever, and keep the SUBSCRIBE queued until it answers.
      retryStrategy: (times) => Math.min(100 * times, 2000), maxRetriesPerRequest: null,
    });
    w.on('error', () => {}); // the data connection reports outages
    w.on('message', (_channel: string, message: string) => {
      // "<master name> <old ip> <old port> <new ip> <new port>"
      const [name, , , newHost, newPort] = message.split(' ');
      if (name !== cfg.masterName || newHost === undefined || newPort === undefined) return;
      announced = { host: newHost, port: Number(newPort) };
      check();
    });
    w.subscribe('+switch-master').catch(() => {}); // (rejected only by stop())
    return w;
  });
  return () => {
    client.off('ready', check);
    for (const w of watchers) w.disconnect();
  };
}

async function disconnect(client: Client): Promise<void> {
  if (client.status === 'ready') {
    try {
      await client.quit();
    } catch {
      // drop the socket below
    }
  }
  // Always: when not ready, only disconnect() stops the reconnection in progress (which keeps the process alive).
  client.disconnect();
}

export async function openRedisStores(cfg: RedisConfig, options: StoreOptions = {}): Promise<Stores> {
  const o = resolveOptions(options);
  if (/[{}]/.test(o.redisKeyPrefix)) {
    throw new StoreError('STORE_INVALID', `redisKeyPrefix "${o.redisKeyPrefix}" must not contain '{' or '}' (hash tags)`);
  }
  const where = describe(cfg);
  let established = false;
  let down = false;
  let firstError: Error | undefined;
  const client = createClient(cfg, o, () => established);
  // Without a listener ioredis prints every failed reconnect to stderr; report an outage once instead.
  client.on('error', (err: Error) => {
    if (!established) {
      firstError ??= err; // connect() itself only says "Connection is closed"
      return;
    }
    if (down) return;
    down = true;
    o.onError(toStoreError(err, 'STORE_UNAVAILABLE', `lost the connection to ${where}; reconnecting`));
  });
  client.on('ready', () => {
    down = false;
  });
  // Every script takes one key but sipfleetSessPutMany, which is told how many (its first argument).
  for (const [name, lua] of Object.entries(SCRIPTS)) client.defineCommand(name, name === 'sipfleetSessPutMany' ? { lua } : { numberOfKeys: 1, lua });

  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${o.connectTimeoutMs} ms`)), o.connectTimeoutMs);
    });
    await Promise.race([client.connect().then(() => client.ping()), timeout]);
  } catch (err) {
    client.disconnect();
    throw toStoreError(firstError ?? err, 'STORE_CONNECT', `cannot connect to ${where}`);
  } finally {
    clearTimeout(timer);
  }
  established = true;
  const stopFollowing = cfg.mode === 'sentinel' ? followFailovers(client as Redis, cfg, o) : () => {};

  const h = new RedisHandle(client, where, o.redisKeyPrefix, o.operationTimeoutMs);
  const location = new RedisLocationStore(h, o);
  const sessions = new RedisSessionStore(h, o.sessionBatchWindowMs);
  return {
    location,
    credentials: new RedisCredentialStore(h),
    sessions,
    async close() {
      sessions.flushPending();
      await location.close();
      if (h.closed) return;
      h.closed = true;
      h.stop();
      stopFollowing();
      await disconnect(client);
    },
  };
}
