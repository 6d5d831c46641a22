import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { AppOptions } from '../server/app-options.ts';
import { SipNode, type NodeApp, type NodeLoad } from '../server/node.ts';
import { NodeMetrics } from '../admin/metrics.ts';
import { checkAdminBinding, startAdminServer } from '../admin/server.ts';
import { adminToken } from '../admin/balancer-admin.ts';
import { readFileSync } from 'node:fs';
import { AppContainer } from '../server/app/container.ts';
import { RouterConfigError, type RouteRule } from '../server/app/router.ts';
import { DigestAuthenticator } from '../server/auth/digest.ts';
import { Registrar } from '../server/registrar.ts';
import { DEFAULT_SESSION_BATCH_WINDOW_MS, openStores, type Stores } from '../store/index.ts';
import type { SipApplication } from '../server/app/types.ts';
import { parseHostPort, type ListenAddress } from '../sip/transport/types.ts';
import { HeartbeatSender } from '../server/cluster/heartbeat.ts';
import { Replicator } from '../server/replication.ts';
import { ConfigError, hostPort, logLevel, overloadOptions, parseTransports, positiveInt, readStackProperties, replication } from './config.ts';
import { createLog } from './log.ts';
import type { Log } from '../server/log.ts';
import { runBalancer } from './balancer.ts';
import { runConfigCheck, runUp } from './up.ts';
import { runDrain, runStatus } from './status.ts';
import { packageVersion } from './version.ts';

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
              --trace-sip           log every SIP message sent and received (JSON lines with its Call-ID)
              --log-level L         fatal, error, warn, info (default), debug, trace or silent
              --admin HOST:PORT     HTTP endpoint: GET /metrics (Prometheus), GET /status (loopback, or
                                    SIPFLEET_ADMIN_TOKEN required); sipfleet up gives each node one
              --store URL           location/credential store: sqlite:PATH, redis://…, postgres://…
                                    (turns on the registrar; SIPFLEET_STORE when not given)
              --auth-realm REALM    digest-authenticate REGISTER (secret: SIPFLEET_AUTH_SECRET)
              --auth-invites        also challenge initial INVITEs (407)
              --auth-nonce-ttl-ms N nonce lifetime (default 300000); older nonces get stale=true
              --node-id ID          this node's id (registrations, balancers, status)
              --balancer HOST:PORT  a balancer's internal address: every request leaves through it
              --cluster-control HOST:PORT  send heartbeats to this balancer (repeatable; secret:
                                    SIPFLEET_CLUSTER_SECRET)
              --heartbeat-ms N      heartbeat interval (default 50)
              --node-version V      version announced to balancers (default: the package's)
              --replication S       ConfirmedDialog (default), EarlyDialog or None
              --replication-window-ms N  Redis: replica writes leave in batches at most every N ms
                                    (default 20; a busy node's 2xx waits up to that long); 0: at once
              --sip-stack-properties FILE  read org.mobicents.ha.javax.sip.REPLICATION_STRATEGY from
                                    a Java stack .properties file
              --overload-lag-ms N   overloaded when the event loop's p99 delay reaches N ms (default 0: off)
              --max-calls-setting-up N  overloaded at N calls being set up (default 0: no limit)
              --max-transactions N  overloaded at N server transactions alive (default 0: no limit)
              --max-heap-mb N       overloaded at N MB of V8 heap used (default 85 % of the heap limit; 0: off)
              --overload-retry-after-s N  Retry-After of the 503 to new calls while overloaded (default 5)
              --overload-recover-ms N  below 80 % of every limit this long to take new calls again (default 2000)
  balancer  run a balancer alone (multi-host clusters; secret: SIPFLEET_CLUSTER_SECRET)
              --listen HOST:PORT    external side, for clients (repeatable; default 127.0.0.1:5060)
              --internal HOST:PORT  internal side, for nodes (default: external host, port + 1)
              --control HOST:PORT   heartbeats from nodes (UDP; default: internal host, port + 1)
              --transport T         udp, tcp or udp,tcp (default udp)
              --dead-after-ms N     a silent node is dead after N ms (default 1000)
              --source-rate N       per-source limit: N messages/s per client address (default 0: off)
              --source-burst N      messages a quiet client address may send at once (default 2 x rate)
              --max-sources N       client addresses tracked at most (default 100000)
              --tls HOST:PORT       TLS listening point for clients (RFC 3261 §26; e.g. trunks)
              --ws HOST:PORT        SIP over WebSocket (RFC 7118), e.g. browsers behind a TLS proxy
              --wss HOST:PORT       SIP over secure WebSocket (WebRTC clients)
              --tls-cert FILE --tls-key FILE  PEM certificate and key for --tls and --wss
              --tls-ca FILE         CAs trusted for the TLS connections the balancer opens
              --tls-max-version V   TLSv1.3 (default) or TLSv1.2, for peers whose TLS 1.3 is broken
              --log-level L         as for node
              --admin HOST:PORT     HTTP admin: /status, drain, /metrics, dashboard at / (for sipfleet status --admin)
  up        a local cluster: a balancer and N nodes on the embedded store
              --nodes N --app NAME|PATH --route-to HOST:PORT --listen HOST:PORT --transport T
              --store URL --replication S --sip-stack-properties FILE --data DIR
              --node-address IP --node-port N
              --internal/--control/--admin HOST:PORT --dead-after-ms N --heartbeat-ms N
              --restart-delay-ms N --ring-ms N --call-ms N --option K=V --log-level L
              --t1/--t2/--t4 MS --router FILE --auth-realm R --trace-sip --no-record-route
              --auth-invites        handed to every node
              --overload-lag-ms/--max-calls-setting-up/--max-transactions/--max-heap-mb N
              --overload-retry-after-s/--overload-recover-ms N  handed to every node
              --source-rate/--source-burst/--max-sources N  the balancer's per-source limits
              --tls/--ws/--wss HOST:PORT --tls-cert/--tls-key/--tls-ca FILE --tls-max-version V  the edge
              --config FILE         the same keys in YAML (flags win; SIPFLEET_STORE overrides store)
  config    check FILE              validate a config file as "up" would, bind nothing
  status    [--json] [--admin URL] [--data DIR]  the nodes of the cluster run by "up" here
  drain     NODE [--undo] [--admin URL] [--data DIR]  no new calls for NODE (its calls go on)
  user      add USER PASSWORD | del USER  --realm REALM --store URL
  help      this text
`;

export { ConfigError, parseTransports } from './config.ts';

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
async function loadApps(specs: string[], options: AppOptions, routerFile: string | undefined, replicator: Replicator | null, log: Log): Promise<NodeApp> {
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
    return new AppContainer({ apps, rules, appOptions: { ...options }, replicator, log });
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
      balancer: { type: 'string' },
      'cluster-control': { type: 'string', multiple: true },
      'heartbeat-ms': { type: 'string' },
      'node-version': { type: 'string' },
      replication: { type: 'string' },
      'replication-window-ms': { type: 'string' },
      'sip-stack-properties': { type: 'string' },
      admin: { type: 'string' },
      'log-level': { type: 'string' },
      'overload-lag-ms': { type: 'string' },
      'max-calls-setting-up': { type: 'string' },
      'max-transactions': { type: 'string' },
      'max-heap-mb': { type: 'string' },
      'overload-retry-after-s': { type: 'string' },
      'overload-recover-ms': { type: 'string' },
    },
    strict: true,
  });
  const log = createLog(values['node-id'] ?? 'node', logLevel('--log-level', values['log-level']));
  const overload = overloadOptions((k) => values[k]);
  const timers = {
    t1: positiveInt('--t1', values.t1, 500, false),
    t2: positiveInt('--t2', values.t2, 4000, false),
    t4: positiveInt('--t4', values.t4, 5000, false),
  };
  if (timers.t2 < timers.t1) throw new ConfigError('--t2', `must not be shorter than --t1 (${timers.t1} ms), got ${timers.t2} ms`);
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
  // The URL may carry a password: SIPFLEET_STORE keeps it out of argv (`sipfleet up` hands it to its nodes so).
  const storeUrl = values.store ?? (process.env.SIPFLEET_STORE || undefined);
  if (storeUrl !== undefined) {
    stores = await openStores(storeUrl, {
      sessionBatchWindowMs: positiveInt('--replication-window-ms', values['replication-window-ms'], DEFAULT_SESSION_BATCH_WINDOW_MS),
      ...(values['node-id'] === undefined ? {} : { clientName: `sipfleet:${values['node-id']}` }),
    });
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
  const fromProperties = values.replication === undefined && values['sip-stack-properties'] !== undefined ? readStackProperties(values['sip-stack-properties']) : undefined;
  const strategy = fromProperties ?? replication('--replication', values.replication);
  const outbound = values.balancer === undefined ? null : { protocol: protocols[0]!, ...hostPort('--balancer', values.balancer) };
  const controls = (values['cluster-control'] ?? []).map((c) => hostPort('--cluster-control', c));
  const secret = process.env.SIPFLEET_CLUSTER_SECRET;
  if (controls.length > 0 && (secret === undefined || secret.length < 8)) {
    throw new ConfigError('SIPFLEET_CLUSTER_SECRET', 'set the cluster secret (at least 8 characters) in the environment when --cluster-control is given: nodes and balancers sign heartbeats with it');
  }
  const heartbeatMs = positiveInt('--heartbeat-ms', values['heartbeat-ms'], 50, false);
  // The node's metrics (GET /metrics on --admin); made first: the replicator reports its store latency to them.
  const metrics = values.admin === undefined ? null : new NodeMetrics(values['node-id'] ?? values.admin);
  const adminAt = values.admin === undefined ? null : hostPort('--admin', values.admin, 0);
  if (adminAt !== null) checkAdminBinding(adminAt.host, adminToken());
  let replicator: Replicator | null = null;
  if (strategy !== 'None' && stores !== null && (stores.sessions !== null || values.replication !== undefined || fromProperties !== undefined)) {
    // Asked for explicitly on a store that keeps no calls (PostgreSQL): say so. By default, replication is simply off there.
    if (stores.sessions === null) throw new ConfigError('--replication', `${strategy} needs a store that holds sessions (sqlite: or redis:); give --replication None with this store`);
    replicator = new Replicator(stores.sessions, strategy, values['node-id'] ?? 'local', metrics?.observeStore);
    replicator.onError = (err) => log.warn({ err: (err as Error).message }, 'replication: store operation failed (retried)');
  }
  const app = await loadApps(values.app ?? ['uas'], appOptions, values.router, replicator, log);
  // Bad input is counted always; logged at most once per source address per 10 s (a flood is not a log storm).
  const node = await SipNode.start({ listen, app, timers, outboundProxy: outbound, overload, onReject: (r) => log.warn(r, 'rejected SIP input') });
  let heartbeat: HeartbeatSender | null = null;
  const monitor = node.overload!;
  const load = (): NodeLoad & { overloaded: boolean; overloadReason?: string } => ({
    ...(app.load?.() ?? { calls: 0, unknownDialogs: 0 }),
    overloaded: monitor.overloaded,
    ...(monitor.reason === null ? {} : { overloadReason: monitor.reason }),
  });
  monitor.onChange = (overloaded, reason) => {
    // Balancers learn it at once, not at the next beat.
    heartbeat?.beat();
    if (overloaded) log.warn({ reason, reading: monitor.last }, `overloaded (${reason}): new calls answered 503, Retry-After ${monitor.limits.retryAfterS}`);
    else log.info('no longer overloaded: taking new calls');
  };
  const admin = adminAt === null ? null : await startAdminServer(adminAt.host, adminAt.port, {
    status: () => ({ id: values['node-id'] ?? null, sip: node.stack.transport.listening, ...load(), overload: monitor.toJSON() }),
    metrics: async () => ({ contentType: metrics!.registry.contentType, body: await metrics!.registry.metrics() }),
  }, { token: adminToken() });
  metrics?.attach({
    node, load, replication: replicator?.counters ?? null,
    heartbeatAgeMs: controls.length === 0 ? null : () => (heartbeat === null || heartbeat.lastBeatAt === 0 ? 0 : Date.now() - heartbeat.lastBeatAt),
  });
  if (controls.length > 0) {
    const listening = node.stack.transport.listening;
    const heartbeatId = values['node-id'] ?? `${listening[0]!.host}:${listening[0]!.port}`;
    heartbeat = new HeartbeatSender({
      id: heartbeatId,
      version: values['node-version'] ?? packageVersion(),
      addresses: [...listening],
      secret: secret!,
      targets: controls,
      intervalMs: heartbeatMs,
      load,
      ...(admin === null ? {} : { admin: admin.url }),
    });
    // Timers are owned under the id balancers know this node by, the id their takeover notices name.
    if (replicator !== null) replicator.nodeId = heartbeatId;
    const container = app instanceof AppContainer ? app : null;
    heartbeat.onTakeover = (dead, survivors) => {
      void container?.takeOver(dead, survivors).then((n) => {
        if (n > 0) log.info({ dead, timers: n }, `took over ${n} timer(s) of ${dead}`);
      });
    };
    await heartbeat.start();
    const hb = heartbeat;
    // Draining by hand on a host without a balancer's admin: kill -USR2 PID toggles it.
    process.on('SIGUSR2', () => { hb.draining = !hb.draining; });
  }
  if (values['trace-sip']) {
    // One line per message: its direction, peer, Call-ID and the message itself.
    node.stack.transport.tap = (dir, data, peer) => {
      const text = data.toString('latin1');
      const callId = /^(?:Call-ID|i)[ \t]*:[ \t]*(\S+)/im.exec(text)?.[1];
      log.info({ sip: dir, peer: `${peer.protocol.toLowerCase()}:${peer.host}:${peer.port}`, callId, message: text }, dir === 'in' ? 'sip received' : 'sip sent');
    };
  }
  const where = node.stack.transport.listening.map((l) => `${l.protocol.toLowerCase()}:${l.host}:${l.port}`).join(' ');
  log.info(`sipfleet node (${app.name}) listening on ${where}${heartbeat === null ? '' : ` (cluster node ${values['node-id'] ?? where}, replication ${replicator === null ? 'off' : strategy}, boot ${heartbeat.boot})`}`);
  await new Promise<void>((resolve) => {
    const stop = (): void => resolve();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  heartbeat?.stop();
  await admin?.close();
  await node.close();
  await replicator?.flushDeletes();
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
      case 'balancer':
        return await runBalancer(rest);
      case 'up':
        return await runUp(rest);
      case 'status':
        return await runStatus(rest);
      case 'drain':
        return await runDrain(rest);
      case 'config':
        return runConfigCheck(rest);
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
