import { parseStoreUrl } from '../store/url.ts';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { MOBICENTS_REPLICATION_PROPERTY, parseReplicationStrategy, REPLICATION_STRATEGIES, type ReplicationStrategy } from '../server/cluster/replication.ts';
import { createSecureContext } from 'node:tls';
import { parseHostPort, type ListenAddress, type TransportProtocol } from '../sip/transport/types.ts';
import type { TlsOptions } from '../sip/transport/tcp.ts';
import type { OverloadOptions } from '../server/overload.ts';
import type { SourceLimitOptions } from '../balancer/source-limits.ts';
import { DEFAULT_DEAD_AFTER_MS } from '../balancer/membership.ts';

/** A command-line or configuration error: names the key and what was expected. */
export class ConfigError extends Error {
  readonly key: string;
  constructor(key: string, message: string) {
    super(`${key}: ${message}`);
    this.name = 'ConfigError';
    this.key = key;
  }
}

export function positiveInt(key: string, value: string | undefined, fallback: number, allowZero = true): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || (!allowZero && Number(value) === 0)) throw new ConfigError(key, `expected a ${allowZero ? 'non-negative' : 'positive'} integer, got "${value}"`);
  return Number(value);
}

export function parseTransports(value: string | undefined, key = '--transport'): TransportProtocol[] {
  const list = (value ?? 'udp').split(',').map((t) => t.trim().toLowerCase());
  const out: TransportProtocol[] = [];
  for (const t of list) {
    if (t !== 'udp' && t !== 'tcp') throw new ConfigError(key, `expected udp, tcp or udp,tcp, got "${value}"`);
    out.push(t.toUpperCase() as TransportProtocol);
  }
  return out;
}

export function hostPort(key: string, value: string, defaultPort = 5060): { host: string; port: number } {
  try {
    return parseHostPort(value, defaultPort);
  } catch (err) {
    throw new ConfigError(key, (err as Error).message);
  }
}

export function replication(key: string, value: string | undefined): ReplicationStrategy {
  if (value === undefined) return 'ConfirmedDialog';
  const s = parseReplicationStrategy(value);
  if (s === null) throw new ConfigError(key, `expected ${REPLICATION_STRATEGIES.join(', ')} (or org.mobicents.ha.javax.sip.REPLICATION_STRATEGY=…), got "${value}"`);
  return s;
}

/**
 * The replication strategy from a Java-style stack properties file (`--sip-stack-properties FILE`), as
 * Restcomm/JAIN-SIP HA users have it: `org.mobicents.ha.javax.sip.REPLICATION_STRATEGY=EarlyDialog`. Other keys are
 * the Java stack's own and are ignored; undefined when the file does not set the strategy.
 */
export function readStackProperties(file: string, key = '--sip-stack-properties'): ReplicationStrategy | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(key, `cannot read ${file}: ${(err as Error).message}`);
  }
  let found: ReplicationStrategy | undefined;
  for (const [i, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith('!')) continue;
    const m = /^([^=:\s]+)\s*[=:\s]\s*(.*)$/.exec(line);
    if (m === null || m[1] !== MOBICENTS_REPLICATION_PROPERTY) continue;
    found = replication(`${file}:${i + 1}: ${MOBICENTS_REPLICATION_PROPERTY}`, m[2]!.trim());
  }
  return found;
}

/** The node's overload flags (`sipfleet node`), as keys without dashes; `up` hands the same keys to its nodes. */
export const OVERLOAD_KEYS = ['overload-lag-ms', 'max-calls-setting-up', 'max-transactions', 'max-heap-mb', 'overload-retry-after-s', 'overload-recover-ms'] as const;
export type OverloadKey = (typeof OVERLOAD_KEYS)[number];

/** Overload limits from flags or keys; an error names the key. Unset keys keep the monitor's defaults. */
export function overloadOptions(get: (k: OverloadKey) => string | undefined, keyName: (k: OverloadKey) => string = (k) => `--${k}`): OverloadOptions {
  const n = (k: OverloadKey, allowZero = true): number | undefined => {
    const v = get(k);
    return v === undefined ? undefined : positiveInt(keyName(k), v, 0, allowZero);
  };
  const o: OverloadOptions = {};
  const lag = n('overload-lag-ms');
  if (lag !== undefined) o.lagMs = lag;
  const calls = n('max-calls-setting-up');
  if (calls !== undefined) o.maxCallsSettingUp = calls;
  const tx = n('max-transactions');
  if (tx !== undefined) o.maxTransactions = tx;
  const heap = n('max-heap-mb');
  if (heap !== undefined) o.maxHeapMb = heap;
  const retry = n('overload-retry-after-s');
  if (retry !== undefined) {
    if (retry > 86_400) throw new ConfigError(keyName('overload-retry-after-s'), `at most 86400 s, got ${retry}`);
    o.retryAfterS = retry;
  }
  const recover = n('overload-recover-ms');
  if (recover !== undefined) o.recoverMs = recover;
  return o;
}

/** The balancer's per-source limit flags (`sipfleet balancer`, and `up`'s keys). */
export const SOURCE_KEYS = ['source-rate', 'source-burst', 'max-sources'] as const;
export type SourceKey = (typeof SOURCE_KEYS)[number];

/** Per-source limits from flags or keys, or null when off (source-rate 0 or unset); an error names the key. */
export function sourceLimits(get: (k: SourceKey) => string | undefined, keyName: (k: SourceKey) => string = (k) => `--${k}`): SourceLimitOptions | null {
  const rate = positiveInt(keyName('source-rate'), get('source-rate'), 0);
  const burst = get('source-burst') === undefined ? undefined : positiveInt(keyName('source-burst'), get('source-burst'), 0, false);
  const maxSources = get('max-sources') === undefined ? undefined : positiveInt(keyName('max-sources'), get('max-sources'), 0, false);
  if (rate === 0) {
    if (burst !== undefined) throw new ConfigError(keyName('source-burst'), `needs ${keyName('source-rate')}`);
    if (maxSources !== undefined) throw new ConfigError(keyName('max-sources'), `needs ${keyName('source-rate')}`);
    return null;
  }
  return { rate, ...(burst === undefined ? {} : { burst }), ...(maxSources === undefined ? {} : { maxSources }) };
}

/** The balancer's edge listening points (`sipfleet balancer`, and `up`'s keys): TLS, WS and WSS for clients. */
export const EDGE_KEYS = ['tls', 'ws', 'wss', 'tls-cert', 'tls-key', 'tls-ca', 'tls-max-version'] as const;
export type EdgeKey = (typeof EDGE_KEYS)[number];

export interface EdgeConfig {
  /** Extra external listening points (TLS, WS, WSS), each HOST:PORT. */
  listen: ListenAddress[];
  /** Key and certificate (PEM, read at start) for TLS and WSS; null when neither is used. */
  tls: TlsOptions | null;
}

/**
 * TLS/WS/WSS listening points from flags or keys; the key and certificate are read and checked as a pair here, so
 * a wrong file fails before anything is bound, naming its key.
 */
export function edgeConfig(get: (k: EdgeKey) => string | undefined, keyName: (k: EdgeKey) => string = (k) => `--${k}`): EdgeConfig {
  const listen: ListenAddress[] = [];
  for (const [k, protocol] of [['tls', 'TLS'], ['ws', 'WS'], ['wss', 'WSS']] as const) {
    const v = get(k);
    if (v !== undefined) listen.push({ protocol, ...hostPort(keyName(k), v, protocol === 'TLS' ? 5061 : protocol === 'WS' ? 80 : 443) });
  }
  const secure = listen.some((l) => l.protocol !== 'WS');
  const certFile = get('tls-cert');
  const keyFile = get('tls-key');
  if (!secure) {
    for (const k of ['tls-cert', 'tls-key', 'tls-ca', 'tls-max-version'] as const) if (get(k) !== undefined) throw new ConfigError(keyName(k), `needs ${keyName('tls')} or ${keyName('wss')}`);
    return { listen, tls: null };
  }
  if (certFile === undefined) throw new ConfigError(keyName('tls-cert'), `${keyName('tls')}/${keyName('wss')} need a certificate (PEM file)`);
  if (keyFile === undefined) throw new ConfigError(keyName('tls-key'), `${keyName('tls')}/${keyName('wss')} need the certificate's private key (PEM file)`);
  const read = (k: EdgeKey, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new ConfigError(keyName(k), `cannot read ${file}: ${(err as Error).message}`);
    }
  };
  const caFile = get('tls-ca');
  const maxVersion = get('tls-max-version');
  if (maxVersion !== undefined && maxVersion !== 'TLSv1.2' && maxVersion !== 'TLSv1.3') throw new ConfigError(keyName('tls-max-version'), `expected TLSv1.2 or TLSv1.3, got "${maxVersion}"`);
  const tls: TlsOptions = {
    cert: read('tls-cert', certFile), key: read('tls-key', keyFile),
    ...(caFile === undefined ? {} : { ca: read('tls-ca', caFile) }), ...(maxVersion === undefined ? {} : { maxVersion }),
  };
  try {
    createSecureContext(tls);
  } catch (err) {
    throw new ConfigError(keyName('tls-key'), `${keyFile} and ${certFile} are not a usable key and certificate: ${(err as Error).message}`);
  }
  return { listen, tls };
}

/** What `sipfleet up` runs: from `--config FILE` (YAML), overridden by flags. Keys are the flags' names. */
export interface UpConfig {
  nodes: number;
  app: string[];
  routeTo: string | undefined;
  listen: { host: string; port: number };
  transport: TransportProtocol[];
  store: string | undefined;
  replication: ReplicationStrategy;
  data: string;
  /** First node's address; the next nodes take the following ones (127.0.0.2, 127.0.0.3…). */
  nodeAddress: string;
  nodePort: number;
  internal: { host: string; port: number } | undefined;
  control: { host: string; port: number } | undefined;
  admin: { host: string; port: number } | undefined;
  deadAfterMs: number;
  heartbeatMs: number;
  restartDelayMs: number;
  ringMs: number | undefined;
  callMs: number | undefined;
  options: Record<string, string>;
  logLevel: LogLevel;
  /** The nodes' own settings (timers, router, auth, tracing, overload limits), as the flags `sipfleet node` takes. */
  nodeFlags: string[];
  /** The balancer's per-source limits; absent: off. */
  sourceLimits?: SourceLimitOptions;
  /** The balancer's TLS/WS/WSS listening points. */
  edge: EdgeConfig;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function logLevel(key: string, value: string | undefined): LogLevel {
  if (value === undefined) return 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(value)) throw new ConfigError(key, `expected one of ${LOG_LEVELS.join(', ')}, got "${value}"`);
  return value as LogLevel;
}

/** Secrets and the store URL (which may carry a password) can come from the environment instead of the file. */
export const UP_ENV: Partial<Record<UpKey, string>> = { store: 'SIPFLEET_STORE' };

/**
 * The effective `up` config: the YAML file's keys, then the environment's (UP_ENV), then the flags; an error names
 * where the bad value came from (`--nodes`, `FILE: nodes` or `SIPFLEET_STORE`).
 */
export function loadUpConfig(file: string | undefined, fromFlags: UpRaw, env: NodeJS.ProcessEnv = process.env): UpConfig {
  const fromFile: UpRaw = file === undefined ? {} : readUpConfigFile(file);
  const fromEnv: UpRaw = {};
  for (const [k, name] of Object.entries(UP_ENV) as Array<[UpKey, string]>) {
    const v = env[name];
    if (v !== undefined && v !== '') fromEnv[k] = v;
  }
  return resolveUpConfig({ ...fromFile, ...fromEnv, ...fromFlags }, (k) =>
    k in fromFlags ? `--${k}` : k in fromEnv ? UP_ENV[k]! : file === undefined ? `--${k}` : `${file}: ${k}`);
}

/** Every key `up` knows, as a flag and as a YAML key. */
export const UP_KEYS = [
  'nodes', 'app', 'route-to', 'listen', 'transport', 'store', 'replication', 'data', 'node-address', 'node-port',
  'internal', 'control', 'admin', 'dead-after-ms', 'heartbeat-ms', 'restart-delay-ms', 'ring-ms', 'call-ms', 'option',
  'sip-stack-properties', 'log-level',
  // Handed to every node as its own flags:
  't1', 't2', 't4', 'replication-window-ms', 'router', 'auth-realm', 'trace-sip', 'no-record-route', 'auth-invites',
  ...OVERLOAD_KEYS,
  // The balancer's:
  ...SOURCE_KEYS,
  ...EDGE_KEYS,
] as const;

/** Keys that are switches: `--trace-sip` on the command line, `trace-sip: true` (or false) in YAML. */
export const UP_SWITCHES: ReadonlySet<string> = new Set(['trace-sip', 'no-record-route', 'auth-invites']);
type UpKey = (typeof UP_KEYS)[number];
export type UpRaw = Partial<Record<UpKey, string | string[]>>;

/** Reads a YAML config file into the flags' shape; every error names the file and the key. */
export function readUpConfigFile(file: string): UpRaw {
  let doc: unknown;
  try {
    // The failsafe schema keeps every scalar as written ("1.10" stays "1.10"): the keys' own checks read them.
    doc = parseYaml(readFileSync(file, 'utf8'), { schema: 'failsafe' });
  } catch (err) {
    throw new ConfigError('--config', `cannot read ${file}: ${(err as Error).message.split('\n')[0]}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(file, 'expected a mapping of keys to values');
  const out: UpRaw = {};
  for (const [key, value] of Object.entries(doc as Record<string, unknown>)) {
    const name = `${file}: ${key}`;
    if (!(UP_KEYS as readonly string[]).includes(key)) throw new ConfigError(name, `unknown key (known: ${UP_KEYS.join(', ')})`);
    if (key === 'option') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ConfigError(name, 'expected a mapping of option names to values');
      out.option = Object.entries(value as Record<string, unknown>).map(([k, v]) => {
        if (typeof v !== 'string') throw new ConfigError(`${name}.${k}`, 'expected a value');
        return `${k}=${v}`;
      });
    } else if (key === 'app') {
      const list = Array.isArray(value) ? value : [value];
      for (const a of list) if (typeof a !== 'string') throw new ConfigError(name, 'expected an app name or path, or a list of them');
      out.app = list as string[];
    } else {
      if (typeof value !== 'string' || value === '') throw new ConfigError(name, `expected a value, got ${Array.isArray(value) ? 'a list' : value === '' || value === null ? 'nothing' : 'a mapping'}`);
      out[key as Exclude<UpKey, 'option' | 'app'>] = value;
    }
  }
  return out;
}

function one(raw: UpRaw, key: UpKey): string | undefined {
  const v = raw[key];
  return Array.isArray(v) ? v.at(-1) : v;
}

/** Validates the merged keys (file, then flags) into a config; an error names the key (`--nodes`, or `file: nodes`). */
export function resolveUpConfig(raw: UpRaw, keyName: (key: UpKey) => string = (k) => `--${k}`): UpConfig {
  const s = (k: UpKey): string | undefined => one(raw, k);
  const limits = sourceLimits(s, keyName);
  const nodes = positiveInt(keyName('nodes'), s('nodes'), 3, false);
  if (nodes > 200) throw new ConfigError(keyName('nodes'), `at most 200 nodes on one host, got ${nodes}`);
  const nodeAddress = s('node-address') ?? '127.0.0.2';
  if (nodes > 1) {
    const octets = /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(nodeAddress)?.slice(1).map(Number);
    if (octets === undefined || octets.some((o) => o > 255)) {
      throw new ConfigError(keyName('node-address'), `nodes take consecutive loopback addresses: expected 127.x.y.z, got "${nodeAddress}"`);
    }
    if (!nthAddress(nodeAddress, nodes - 1).startsWith('127.')) {
      throw new ConfigError(keyName('node-address'), `${nodes} consecutive addresses from ${nodeAddress} leave 127.0.0.0/8`);
    }
  }
  const routeTo = s('route-to');
  if (routeTo !== undefined) hostPort(keyName('route-to'), routeTo);
  const options: Record<string, string> = {};
  const opt = raw.option;
  for (const o of Array.isArray(opt) ? opt : opt === undefined ? [] : [opt]) {
    const eq = o.indexOf('=');
    if (eq <= 0) throw new ConfigError(keyName('option'), `expected KEY=VALUE, got "${o}"`);
    options[o.slice(0, eq)] = o.slice(eq + 1);
  }
  const opt3 = (k: UpKey): { host: string; port: number } | undefined => {
    const v = s(k);
    return v === undefined ? undefined : hostPort(keyName(k), v, 0);
  };
  const app = raw.app === undefined ? ['proxy'] : Array.isArray(raw.app) ? raw.app : [raw.app];
  const strategy = s('replication') !== undefined || s('sip-stack-properties') === undefined
    ? replication(keyName('replication'), s('replication'))
    : readStackProperties(s('sip-stack-properties')!, keyName('sip-stack-properties')) ?? 'ConfirmedDialog';
  const store = checkStore(keyName('store'), s('store'));
  if (store !== undefined && /^postgres(ql)?:/i.test(store) && strategy !== 'None') {
    throw new ConfigError(keyName('replication'), `${strategy} needs a store that holds calls (sqlite: or redis:); postgres: keeps registrations only: give replication None`);
  }
  return {
    nodes,
    app,
    routeTo,
    listen: hostPort(keyName('listen'), s('listen') ?? '127.0.0.1:5060'),
    transport: parseTransports(s('transport'), keyName('transport')),
    store,
    replication: strategy,
    data: s('data') ?? 'sipfleet-data',
    nodeAddress,
    nodePort: positiveInt(keyName('node-port'), s('node-port'), 5060),
    internal: opt3('internal'),
    control: opt3('control'),
    admin: opt3('admin'),
    deadAfterMs: positiveInt(keyName('dead-after-ms'), s('dead-after-ms'), DEFAULT_DEAD_AFTER_MS, false),
    heartbeatMs: positiveInt(keyName('heartbeat-ms'), s('heartbeat-ms'), 50, false),
    restartDelayMs: positiveInt(keyName('restart-delay-ms'), s('restart-delay-ms'), 1000),
    ringMs: s('ring-ms') === undefined ? undefined : positiveInt(keyName('ring-ms'), s('ring-ms'), 0),
    callMs: s('call-ms') === undefined ? undefined : positiveInt(keyName('call-ms'), s('call-ms'), 0),
    options,
    logLevel: logLevel(keyName('log-level'), s('log-level')),
    nodeFlags: nodeFlags(s, keyName),
    ...(limits === null ? {} : { sourceLimits: limits }),
    edge: edgeConfig(s, keyName),
  };
}

/** The keys `up` hands to each node as its flags, checked here (a bad one would make every node exit, in a loop). */
function nodeFlags(s: (k: UpKey) => string | undefined, keyName: (k: UpKey) => string): string[] {
  const flags: string[] = [];
  const t = { t1: 500, t2: 4000, t4: 5000 };
  for (const k of ['t1', 't2', 't4'] as const) {
    if (s(k) === undefined) continue;
    t[k] = positiveInt(keyName(k), s(k), t[k], false);
    flags.push(`--${k}`, String(t[k]));
  }
  if (t.t2 < t.t1) throw new ConfigError(keyName('t2'), `must not be shorter than t1 (${t.t1} ms), got ${t.t2} ms`);
  const window = s('replication-window-ms');
  if (window !== undefined) flags.push('--replication-window-ms', String(positiveInt(keyName('replication-window-ms'), window, 0)));
  const router = s('router');
  if (router !== undefined) {
    if (!existsSync(router)) throw new ConfigError(keyName('router'), `no file ${router}`);
    flags.push('--router', path.resolve(router));
  }
  const realm = s('auth-realm');
  if (realm !== undefined) flags.push('--auth-realm', realm);
  for (const k of ['trace-sip', 'no-record-route', 'auth-invites'] as const) {
    const v = s(k);
    if (v === undefined || v === 'false') continue;
    if (v !== 'true') throw new ConfigError(keyName(k), `expected true or false, got "${v}"`);
    flags.push(`--${k}`);
  }
  if (flags.includes('--auth-invites') && realm === undefined) throw new ConfigError(keyName('auth-invites'), 'needs auth-realm');
  overloadOptions(s, keyName);
  for (const k of OVERLOAD_KEYS) {
    const v = s(k);
    if (v !== undefined) flags.push(`--${k}`, v);
  }
  return flags;
}

/** A store URL `up`'s nodes can open, checked here so a bad one stops `up` instead of failing every node in a loop. */
function checkStore(key: string, url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  let cfg;
  try {
    cfg = parseStoreUrl(url);
  } catch (err) {
    throw new ConfigError(key, (err as Error).message.replace(/^store: /, ''));
  }
  if (cfg.kind === 'sqlite' && cfg.path === ':memory:') throw new ConfigError(key, 'sqlite::memory: is one process\'s own database; the nodes need a file they share');
  if (cfg.kind === 'memory') throw new ConfigError(key, 'memory: is one process\'s own store; the nodes of a cluster need a shared one (sqlite: or redis:)');
  return url;
}

/** The n-th address after `base` (127.0.0.2 + 1 = 127.0.0.3). */
export function nthAddress(base: string, n: number): string {
  const parts = base.split('.').map(Number);
  let v = ((parts[0]! << 24) >>> 0) + (parts[1]! << 16) + (parts[2]! << 8) + parts[3]! + n;
  const out: number[] = [];
  for (let i = 0; i < 4; i++) {
    out.unshift(v & 255);
    v = Math.floor(v / 256);
  }
  return out.join('.');
}
