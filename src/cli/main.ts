import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { AppOptions } from '../server/app-options.ts';
import { SipNode, type NodeApp } from '../server/node.ts';
import { readFileSync } from 'node:fs';
import { AppContainer } from '../server/app/container.ts';
import { RouterConfigError, type RouteRule } from '../server/app/router.ts';
import { DigestAuthenticator } from '../server/auth/digest.ts';
import { Registrar } from '../server/registrar.ts';
import { openStores, type Stores } from '../store/index.ts';
import type { SipApplication } from '../server/app/types.ts';
import { parseHostPort, type ListenAddress, type TransportProtocol } from '../sip/transport/types.ts';

const USAGE = `Usage: sipfleet <command> [options]

Commands:
  node      run one SIP node
              --app NAME|PATH       uas, proxy, b2bua (stack-uas, stack-proxy: no app layer), or a module;
                                    repeatable (several apps share the node)
              --router FILE         JSON rules picking the app of an initial request (method, uri, header)
              --listen HOST:PORT    address to listen on (repeatable; default 127.0.0.1:5060)
              --transport T         udp, tcp or udp,tcp (default udp)
              --route-to HOST:PORT  proxy: next hop for initial requests
              --ring-ms N           uas: ring for N ms before answering (default 0)
              --call-ms N           uas: hang up after N ms (default 0: never)
              --no-record-route     proxy: do not insert Record-Route
              --option KEY=VALUE    an option for the app (repeatable)
              --t1 MS --t2 MS --t4 MS  RFC 3261 timer values
              --trace-sip           print every SIP message sent and received
              --store URL           location/credential store: sqlite:PATH, redis://…, postgres://…
                                    (turns on the registrar)
              --auth-realm REALM    digest-authenticate REGISTER (secret: SIPFLEET_AUTH_SECRET)
              --auth-invites        also challenge initial INVITEs (407)
              --auth-nonce-ttl-ms N nonce lifetime (default 300000); older nonces get stale=true
              --node-id ID          this node's id, recorded with its registrations
  user      add USER PASSWORD | del USER  --realm REALM --store URL
  help      this text
`;

/** A command-line or configuration error: names the key and what was expected. */
export class ConfigError extends Error {
  readonly key: string;
  constructor(key: string, message: string) {
    super(`${key}: ${message}`);
    this.name = 'ConfigError';
    this.key = key;
  }
}

function positiveInt(key: string, value: string | undefined, fallback: number, allowZero = true): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || (!allowZero && Number(value) === 0)) throw new ConfigError(key, `expected a ${allowZero ? 'non-negative' : 'positive'} integer, got "${value}"`);
  return Number(value);
}

export function parseTransports(value: string | undefined): TransportProtocol[] {
  const list = (value ?? 'udp').split(',').map((t) => t.trim().toLowerCase());
  const out: TransportProtocol[] = [];
  for (const t of list) {
    if (t !== 'udp' && t !== 'tcp') throw new ConfigError('--transport', `expected udp, tcp or udp,tcp, got "${value}"`);
    out.push(t.toUpperCase() as TransportProtocol);
  }
  return out;
}

const BUNDLED: Record<string, () => Promise<unknown>> = {
  uas: () => import('../../apps/uas.ts'),
  proxy: () => import('../../apps/proxy.ts'),
  b2bua: () => import('../../apps/b2bua.ts'),
  'stack-proxy': () => import('../../apps/stack-proxy.ts'),
  'stack-uas': () => import('../../apps/stack-uas.ts'),
};

function isApplication(v: unknown): v is SipApplication {
  return typeof v === 'object' && v !== null && typeof (v as { name?: unknown }).name === 'string';
}

/**
 * Loads an app: a bundled name or a module path. A module's default export is a SipApplication, or a function
 * taking the options and returning one; it runs in an AppContainer. A module exporting `createApp(options)`
 * returning a NodeApp runs on the bare stack.
 */
async function loadApp(spec: string, options: AppOptions): Promise<NodeApp | SipApplication> {
  let mod: { createApp?: (o: AppOptions) => NodeApp; default?: unknown };
  const bundled = BUNDLED[spec];
  if (bundled !== undefined) {
    mod = (await bundled()) as typeof mod;
  } else if (spec.includes('/') || spec.endsWith('.ts') || spec.endsWith('.js')) {
    try {
      mod = (await import(pathToFileURL(path.resolve(spec)).href)) as typeof mod;
    } catch (err) {
      throw new ConfigError('--app', `cannot load ${spec}: ${(err as Error).message}`);
    }
  } else {
    throw new ConfigError('--app', `unknown app "${spec}" (bundled: ${Object.keys(BUNDLED).join(', ')}; or give a path)`);
  }
  if (typeof mod.createApp === 'function') return mod.createApp(options);
  const app = typeof mod.default === 'function' ? (mod.default as (o: AppOptions) => unknown)(options) : mod.default;
  if (!isApplication(app)) throw new ConfigError('--app', `${spec} must export a SipApplication (or a function returning one) as default`);
  return app;
}

/**
 * Loads the apps of a node into one container. With several apps, `--router FILE` (a JSON array of rules
 * `{ "app": NAME, "method"?: M, "uri"?: REGEX, "header"?: { "name": H, "pattern": REGEX } }`) picks the app for each
 * initial request; requests no rule matches go to the first app.
 */
async function loadApps(specs: string[], options: AppOptions, routerFile: string | undefined): Promise<NodeApp> {
  const loaded = await Promise.all(specs.map((s) => loadApp(s, options)));
  const apps: SipApplication[] = [];
  for (const [i, a] of loaded.entries()) {
    if (isApplication(a) && !('onRequest' in a)) apps.push(a);
    else if (loaded.length === 1) return a as NodeApp;
    else throw new ConfigError('--app', `${specs[i]} runs on the bare stack and cannot share a node with other apps`);
  }
  const names = new Set<string>();
  for (const a of apps) {
    if (names.has(a.name)) throw new ConfigError('--app', `two apps are named "${a.name}"`);
    names.add(a.name);
  }
  let rules: RouteRule[] = [];
  if (routerFile !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(routerFile, 'utf8'));
    } catch (err) {
      throw new ConfigError('--router', `cannot read ${routerFile}: ${(err as Error).message}`);
    }
    if (!Array.isArray(parsed)) throw new ConfigError('--router', 'expected a JSON array of rules');
    rules = parsed as RouteRule[];
  }
  try {
    return new AppContainer({ apps, rules, appOptions: { ...options } });
  } catch (err) {
    if (err instanceof RouterConfigError) throw new ConfigError(err.key, err.message.slice(err.key.length + 2));
    throw err;
  }
}

async function runNode(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      app: { type: 'string', multiple: true },
      router: { type: 'string' },
      listen: { type: 'string', multiple: true },
      transport: { type: 'string' },
      'route-to': { type: 'string' },
      'ring-ms': { type: 'string' },
      'call-ms': { type: 'string' },
      'no-record-route': { type: 'boolean', default: false },
      t1: { type: 'string' },
      t2: { type: 'string' },
      t4: { type: 'string' },
      'trace-sip': { type: 'boolean', default: false },
      option: { type: 'string', multiple: true },
      store: { type: 'string' },
      'auth-realm': { type: 'string' },
      'auth-invites': { type: 'boolean', default: false },
      'auth-nonce-ttl-ms': { type: 'string' },
      'node-id': { type: 'string' },
    },
    strict: true,
  });
  const protocols = parseTransports(values.transport);
  const listen: ListenAddress[] = [];
  for (const l of values.listen ?? ['127.0.0.1:5060']) {
    let hp: { host: string; port: number };
    try {
      hp = parseHostPort(l);
    } catch (err) {
      throw new ConfigError('--listen', (err as Error).message);
    }
    for (const protocol of protocols) listen.push({ protocol, host: hp.host, port: hp.port });
  }
  if (values['route-to'] !== undefined) {
    try {
      parseHostPort(values['route-to']);
    } catch (err) {
      throw new ConfigError('--route-to', (err as Error).message);
    }
  }
  const extra: Record<string, string> = {};
  for (const o of values.option ?? []) {
    const eq = o.indexOf('=');
    if (eq <= 0) throw new ConfigError('--option', `expected KEY=VALUE, got "${o}"`);
    extra[o.slice(0, eq)] = o.slice(eq + 1);
  }
  const appOptions: AppOptions = {
    ...extra,
    routeTo: values['route-to'],
    recordRoute: !values['no-record-route'],
    ringMs: positiveInt('--ring-ms', values['ring-ms'], 0),
    callMs: positiveInt('--call-ms', values['call-ms'], 0),
  };
  // A shared location store turns on the registrar (and, with --auth-realm, digest authentication).
  let stores: Stores | null = null;
  if (values.store !== undefined) {
    stores = await openStores(values.store);
    const realm = values['auth-realm'];
    let authenticator: DigestAuthenticator | null = null;
    if (realm !== undefined) {
      const secret = process.env.SIPFLEET_AUTH_SECRET;
      if (secret === undefined) throw new ConfigError('SIPFLEET_AUTH_SECRET', 'the cluster secret for digest nonces must be set in the environment when --auth-realm is given');
      const credentials = stores.credentials;
      const lookup = (username: string, r: string) => credentials.get(username, r);
      const nonceTtlMs = positiveInt('--auth-nonce-ttl-ms', values['auth-nonce-ttl-ms'], 300_000, false);
      authenticator = new DigestAuthenticator({ realm, secret, credentials: lookup, nonceTtlMs });
      if (values['auth-invites']) appOptions.inviteAuthenticator = new DigestAuthenticator({ realm, secret, credentials: lookup, nonceTtlMs, proxy: true });
    } else if (values['auth-invites']) {
      throw new ConfigError('--auth-invites', 'needs --auth-realm');
    }
    appOptions.registrar = new Registrar({ location: stores.location, authenticator, nodeId: values['node-id'] ?? null });
  } else if (values['auth-realm'] !== undefined) {
    throw new ConfigError('--auth-realm', 'needs --store (credentials live in the store)');
  }
  const app = await loadApps(values.app ?? ['uas'], appOptions, values.router);
  const timers = {
    t1: positiveInt('--t1', values.t1, 500, false),
    t2: positiveInt('--t2', values.t2, 4000, false),
    t4: positiveInt('--t4', values.t4, 5000, false),
  };
  const node = await SipNode.start({ listen, app, timers });
  if (values['trace-sip']) {
    node.stack.transport.tap = (dir, data, peer) => {
      process.stderr.write(`${dir === 'in' ? '<<<' : '>>>'} ${peer.protocol} ${peer.host}:${peer.port}\n${data.toString('latin1')}\n`);
    };
  }
  const where = node.stack.transport.listening.map((l) => `${l.protocol.toLowerCase()}:${l.host}:${l.port}`).join(' ');
  process.stdout.write(`sipfleet node (${app.name}) listening on ${where}\n`);
  await new Promise<void>((resolve) => {
    const stop = (): void => resolve();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  await node.close();
  await stores?.close();
  return 0;
}

/** `sipfleet user add USER PASSWORD --realm R --store URL` / `sipfleet user del USER --realm R --store URL`. */
async function runUser(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { realm: { type: 'string' }, store: { type: 'string' } },
    allowPositionals: true,
    strict: true,
  });
  const [action, username, password] = positionals;
  if (values.store === undefined) throw new ConfigError('--store', 'required');
  if (values.realm === undefined) throw new ConfigError('--realm', 'required');
  if (username === undefined || (action === 'add' && password === undefined) || (action !== 'add' && action !== 'del')) {
    throw new ConfigError('user', 'usage: sipfleet user add USER PASSWORD | del USER --realm R --store URL');
  }
  const stores = await openStores(values.store);
  try {
    if (action === 'add') await stores.credentials.set(username, values.realm, password!);
    else if (!(await stores.credentials.delete(username, values.realm))) {
      process.stderr.write(`sipfleet: no user ${username} in realm ${values.realm}\n`);
      return 1;
    }
  } finally {
    await stores.close();
  }
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'node':
        return await runNode(rest);
      case 'user':
        return await runUser(rest);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        return command === undefined ? 1 : 0;
      default:
        process.stderr.write(`sipfleet: unknown command "${command}"\n\n${USAGE}`);
        return 1;
    }
  } catch (err) {
    if (err instanceof ConfigError || (err as { key?: unknown }).key !== undefined || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`sipfleet: ${(err as Error).message}\n`);
      return 2;
    }
    process.stderr.write(`sipfleet: ${(err as Error).message}\n`);
    return 1;
  }
}

// Run directly (node --import tsx src/cli/main.ts …) as well as through bin/sipfleet.js.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}
