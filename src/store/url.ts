/**
 * Parsing of the `store` setting into a backend configuration. Pure, so every accepted and refused form is unit
 * tested without a server. Errors never echo a password: they quote the setting with its password masked.
 */
import { StoreConfigError } from './errors.ts';

export interface HostPort {
  host: string;
  port: number;
}

export interface RedisAuth {
  username?: string;
  password?: string;
}

export type StoreConfig =
  | { kind: 'memory' }
  | { kind: 'sqlite'; path: string }
  | ({ kind: 'redis'; mode: 'standalone'; node: HostPort; db: number; tls: boolean } & RedisAuth)
  | ({ kind: 'redis'; mode: 'sentinel'; sentinels: HostPort[]; masterName: string; db: number } & RedisAuth)
  | ({ kind: 'redis'; mode: 'cluster'; nodes: HostPort[] } & RedisAuth)
  | { kind: 'postgres'; connectionString: string };

/** The setting with any password replaced by '***', for messages and logs. */
export function redactStoreUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:@/?#]*:)[^@/?#]*@/i, '$1***@');
}

export function parseStoreUrl(url: unknown): StoreConfig {
  if (typeof url !== 'string' || url.trim() === '') throw new StoreConfigError('the setting is empty');
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase();
  switch (scheme) {
    case 'memory':
      if (url.slice(7) !== '' && url.slice(7) !== '//') throw new StoreConfigError(`"${redactStoreUrl(url)}": memory: takes nothing after the colon`);
      return { kind: 'memory' };
    case 'sqlite':
      return parseSqlite(url);
    case 'redis':
    case 'rediss':
    case 'redis+sentinel':
    case 'redis+cluster':
      return parseRedis(url, scheme);
    case 'postgres':
    case 'postgresql':
      return parsePostgres(url);
    default:
      throw new StoreConfigError(
        scheme === undefined ? `"${redactStoreUrl(url)}" has no scheme` : `unknown scheme "${scheme}:" in "${redactStoreUrl(url)}"`,
      );
  }
}

function parseSqlite(url: string): StoreConfig {
  // sqlite:PATH, with sqlite:///abs/path accepted too (the SQLAlchemy-style form people type out of habit).
  let path = url.slice('sqlite:'.length);
  if (path.startsWith('//')) path = path.slice(2);
  if (path === '') throw new StoreConfigError(`"${url}" names no file (use sqlite:PATH or sqlite::memory:)`);
  return { kind: 'sqlite', path };
}

const REDIS_URL = /^([a-z+]+):\/\/(?:([^@/?#]*)@)?([^/?#]*)(\/[^?#]*)?(\?[^#]*)?(#.*)?$/i;

function parseRedis(url: string, scheme: string): StoreConfig {
  const shown = redactStoreUrl(url);
  const m = REDIS_URL.exec(url);
  if (m === null) throw new StoreConfigError(`"${shown}" is not a valid ${scheme}:// URL`);
  const [, , userinfo, hostList = '', rawPath = '', query, fragment] = m;
  if (query !== undefined || fragment !== undefined) throw new StoreConfigError(`"${shown}": ${scheme}:// takes no query or fragment`);
  const auth = parseUserinfo(userinfo, shown);
  const defaultPort = scheme === 'redis+sentinel' ? 26379 : 6379;
  const nodes = hostList.split(',').map((h) => parseHostPort(h, defaultPort, shown));
  const segments = rawPath.split('/').filter((s) => s !== '');

  if (scheme === 'redis' || scheme === 'rediss') {
    if (nodes.length !== 1) {
      throw new StoreConfigError(`"${shown}": ${scheme}:// takes one host (use redis+sentinel:// or redis+cluster:// for several)`);
    }
    if (segments.length > 1) throw new StoreConfigError(`"${shown}": the path is the database number only`);
    const db = parseDb(segments[0], shown);
    return { kind: 'redis', mode: 'standalone', node: nodes[0]!, db, tls: scheme === 'rediss', ...auth };
  }
  if (scheme === 'redis+sentinel') {
    if (segments.length < 1 || segments.length > 2) {
      throw new StoreConfigError(`"${shown}": redis+sentinel:// needs /MASTERNAME (optionally /MASTERNAME/DB)`);
    }
    const masterName = decode(segments[0]!, shown);
    return { kind: 'redis', mode: 'sentinel', sentinels: nodes, masterName, db: parseDb(segments[1], shown), ...auth };
  }
  if (segments.length > 1 || (segments.length === 1 && segments[0] !== '0')) {
    throw new StoreConfigError(`"${shown}": a Redis Cluster has database 0 only`);
  }
  return { kind: 'redis', mode: 'cluster', nodes, ...auth };
}

function decode(s: string, shown: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new StoreConfigError(`"${shown}": bad %-escape`);
  }
}

function parseUserinfo(userinfo: string | undefined, shown: string): RedisAuth {
  if (userinfo === undefined || userinfo === '') return {};
  const colon = userinfo.indexOf(':');
  const user = decode(colon < 0 ? userinfo : userinfo.slice(0, colon), shown);
  const out: RedisAuth = {};
  if (user !== '') out.username = user;
  if (colon >= 0) out.password = decode(userinfo.slice(colon + 1), shown);
  return out;
}

function parseHostPort(s: string, defaultPort: number, shown: string): HostPort {
  const m = /^(?:\[([0-9a-f:.]+)\]|([^:[\]\s]+))(?::(\d{1,5}))?$/i.exec(s);
  const port = m?.[3] === undefined ? defaultPort : Number(m[3]);
  if (m === null || port < 1 || port > 65535) throw new StoreConfigError(`"${shown}": "${s}" is not HOST:PORT`);
  return { host: (m[1] ?? m[2])!, port };
}

function parseDb(s: string | undefined, shown: string): number {
  if (s === undefined) return 0;
  if (!/^\d{1,5}$/.test(s)) throw new StoreConfigError(`"${shown}": database "${s}" is not a number`);
  return Number(s);
}

function parsePostgres(url: string): StoreConfig {
  try {
    // Validation only: pg parses the string itself (it also understands ?host=/socket/dir and sslmode=).
    new URL(url);
  } catch {
    throw new StoreConfigError(`"${redactStoreUrl(url)}" is not a valid postgres:// URL`);
  }
  return { kind: 'postgres', connectionString: url };
}
