import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { adminToken, startBalancerAdmin } from '../admin/balancer-admin.ts';
import { checkAdminBinding, type AdminServer } from '../admin/server.ts';
import { Balancer, type BalancerStatus } from '../balancer/balancer.ts';
import { formatHostPort } from '../sip/transport/types.ts';
import { redactStoreUrl } from '../store/url.ts';
import { listenOn } from './balancer.ts';
import { createLog } from './log.ts';
import { ConfigError, loadUpConfig, nthAddress, UP_KEYS, UP_SWITCHES, type UpConfig, type UpRaw } from './config.ts';

/** This CLI's entry module, run again for each node (under the same loader: tsx in development, dist otherwise). */
const MAIN = fileURLToPath(new URL(`./main${path.extname(fileURLToPath(import.meta.url))}`, import.meta.url));

export const ADMIN_FILE = 'admin.json';

interface Child {
  id: string;
  address: string;
  args: string[];
  process: ChildProcess | null;
  pid: number;
  restarts: number;
  lastExit: string | null;
  startedAt: number;
}

export interface UpStatus extends BalancerStatus {
  supervisor: { pid: number; data: string; store: string; replication: string; apps: string[] };
  children: Array<{ id: string; pid: number; address: string; restarts: number; lastExit: string | null }>;
}

/** A Buffer as JSON.stringify hands it to a replacer (its toJSON ran first). */
function isBufferJson(v: unknown): v is { type: 'Buffer'; data: number[] } {
  return typeof v === 'object' && v !== null && (v as { type?: unknown }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** `sipfleet up`: a balancer (in this process) and N node processes, restarted when they die. */
export async function runUp(argv: string[]): Promise<number> {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> = { config: { type: 'string' } };
  for (const k of UP_KEYS) options[k] = k === 'app' || k === 'option' ? { type: 'string', multiple: true } : UP_SWITCHES.has(k) ? { type: 'boolean' } : { type: 'string' };
  const { values } = parseArgs({ args: argv, options, strict: true });
  const fromFlags: UpRaw = {};
  for (const k of UP_KEYS) {
    const v = values[k];
    if (v !== undefined) fromFlags[k] = typeof v === 'boolean' ? String(v) : (v as string | string[]);
  }
  return new Cluster(loadUpConfig(values.config as string | undefined, fromFlags)).run();
}

/**
 * `sipfleet config check FILE`: validates a config file as `up` would (with the environment's overrides), binding
 * nothing; prints the effective config, or the first error (naming the key) and exits 2.
 */
export function runConfigCheck(argv: string[]): number {
  const { positionals } = parseArgs({ args: argv, allowPositionals: true, strict: true });
  if (positionals[0] !== 'check' || positionals.length !== 2) throw new ConfigError('config', 'usage: sipfleet config check FILE');
  const file = positionals[1]!;
  const config = loadUpConfig(file, {});
  const admin = config.admin ?? { host: '127.0.0.1', port: 0 };
  checkAdminBinding(admin.host, adminToken());
  // Never a secret on the screen: the store's password masked, key and certificate contents left out.
  const shown = { ...config, store: config.store === undefined ? undefined : redactStoreUrl(config.store) };
  process.stdout.write(`${file}: ok\n${JSON.stringify(shown, (_k, v: unknown) => (isBufferJson(v) ? `(${v.data.length} bytes from file, not shown)` : v), 2)}\n`);
  return 0;
}

class Cluster {
  readonly #config: UpConfig;
  readonly #children: Child[] = [];
  readonly #secret = process.env.SIPFLEET_CLUSTER_SECRET ?? randomBytes(24).toString('hex');
  readonly #dataDir: string;
  readonly #store: string;
  #balancer: Balancer | null = null;
  #admin: AdminServer | null = null;
  #stopping = false;
  /** The supervisor's own lines, and the in-process balancer's (membership changes, with their detection times). */
  readonly #log;
  readonly #balancerLog;

  constructor(config: UpConfig) {
    this.#config = config;
    this.#log = createLog('supervisor', config.logLevel);
    this.#balancerLog = createLog('balancer', config.logLevel);
    this.#dataDir = path.resolve(config.data);
    this.#store = config.store ?? `sqlite:${path.join(this.#dataDir, 'sipfleet.db')}`;
  }

  async run(): Promise<number> {
    const c = this.#config;
    mkdirSync(this.#dataDir, { recursive: true });
    const adminFile = path.join(this.#dataDir, ADMIN_FILE);
    if (existsSync(adminFile)) {
      try {
        const prev = JSON.parse(readFileSync(adminFile, 'utf8')) as { pid?: number };
        if (typeof prev.pid === 'number' && prev.pid !== process.pid && isAlive(prev.pid)) {
          throw new ConfigError('--data', `a cluster already runs with data in ${this.#dataDir} (pid ${prev.pid})`);
        }
      } catch (err) {
        if (err instanceof ConfigError) throw err;
      }
    }
    const host = c.listen.host;
    const internal = c.internal ?? { host, port: 0 };
    const admin = c.admin ?? { host: '127.0.0.1', port: 0 };
    checkAdminBinding(admin.host, adminToken()); // before binding anything
    this.#balancer = await Balancer.start({
      external: [...listenOn(c.transport, c.listen), ...c.edge.listen],
      transport: { tls: c.edge.tls, onReject: (r) => this.#balancerLog.warn(r, 'rejected SIP input') },
      internal: listenOn(c.transport, internal),
      control: c.control ?? { host: internal.host, port: 0 },
      secret: this.#secret,
      deadAfterMs: c.deadAfterMs,
      sourceLimits: c.sourceLimits ?? null,
      log: (line) => this.#balancerLog.info(line),
    });
    this.#admin = await startBalancerAdmin(this.#balancer, admin.host, admin.port, { status: () => this.status(), token: adminToken() });
    writeFileSync(adminFile, JSON.stringify({ url: this.#admin.url, pid: process.pid, started: new Date().toISOString() }) + '\n');
    const st = this.#balancer.status();
    const outbound = this.#balancer.forwarder.internal.listening[0]!;
    const control = `${c.control?.host ?? internal.host}:${this.#balancer.controlPort}`;
    for (let i = 0; i < c.nodes; i++) {
      const id = `node-${i + 1}`;
      const address = c.nodes === 1 && !/^127\./.test(c.nodeAddress) ? c.nodeAddress : nthAddress(c.nodeAddress, i);
      const args = [
        MAIN, 'node', '--node-id', id, '--listen', formatHostPort(address, c.nodePort),
        '--transport', c.transport.map((t) => t.toLowerCase()).join(','),
        '--balancer', formatHostPort(outbound.host, outbound.port), '--cluster-control', control,
        '--heartbeat-ms', String(c.heartbeatMs), '--replication', c.replication,
        '--admin', formatHostPort(address, 0), '--log-level', c.logLevel,
      ];
      for (const a of c.app) args.push('--app', a);
      if (c.routeTo !== undefined) args.push('--route-to', c.routeTo);
      if (c.ringMs !== undefined) args.push('--ring-ms', String(c.ringMs));
      if (c.callMs !== undefined) args.push('--call-ms', String(c.callMs));
      for (const [k, v] of Object.entries(c.options)) args.push('--option', `${k}=${v}`);
      args.push(...c.nodeFlags);
      this.#children.push({ id, address, args, process: null, pid: 0, restarts: 0, lastExit: null, startedAt: 0 });
    }
    this.#log.info(`sipfleet up: balancer external ${st.external.join(' ')}, internal ${st.internal.join(' ')}, control ${st.control}; ` +
      `${c.nodes} node(s) running ${c.app.join('+')} on ${redactStoreUrl(this.#store)}, replication ${c.replication}; admin ${this.#admin.url}`);
    for (const child of this.#children) this.#spawn(child);
    const stopped = new Promise<void>((resolve) => {
      process.once('SIGTERM', resolve);
      process.once('SIGINT', resolve);
    });
    const ready = this.#waitReady();
    await Promise.race([ready, stopped]);
    if (!this.#stopping) await stopped;
    await this.#stop();
    rmSync(adminFile, { force: true });
    return 0;
  }

  async #waitReady(): Promise<void> {
    const membership = this.#balancer!.membership;
    if (await this.#balancer!.waitFor(() => membership.aliveNodes.length >= this.#config.nodes, 60_000)) {
      this.#log.info(`sipfleet up: cluster ready (${membership.aliveNodes.length} nodes)`);
    } else {
      this.#log.info(`sipfleet up: only ${membership.aliveNodes.length} of ${this.#config.nodes} nodes joined within 60 s`);
    }
  }

  #spawn(child: Child): void {
    const p = spawn(process.execPath, [...process.execArgv, ...child.args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      // Secrets through the environment, never argv (which any local user can read in ps).
      env: { ...process.env, SIPFLEET_CLUSTER_SECRET: this.#secret, SIPFLEET_STORE: this.#store },
    });
    child.process = p;
    child.pid = p.pid ?? 0;
    child.startedAt = Date.now();
    // Nodes log JSON lines that name them already; anything else they print (a crash trace) gets their id in front.
    const prefix = (stream: NodeJS.WritableStream) => {
      let rest = '';
      return (data: Buffer): void => {
        const lines = (rest + data.toString('utf8')).split('\n');
        rest = lines.pop()!;
        for (const line of lines) stream.write(line.startsWith('{') ? `${line}\n` : `[${child.id}] ${line}\n`);
      };
    };
    p.stdout?.on('data', prefix(process.stdout));
    p.stderr?.on('data', prefix(process.stderr));
    p.on('error', (err) => this.#log.info(`node ${child.id}: cannot start: ${err.message}`));
    p.on('exit', (code, signal) => {
      child.process = null;
      child.lastExit = signal !== null ? `signal ${signal}` : `code ${code}`;
      if (this.#stopping) return;
      // A child that dies is reported and started again (a new boot id); one that keeps dying at once backs off.
      const quick = Date.now() - child.startedAt < 2_000;
      const delay = this.#config.restartDelayMs * (quick ? Math.min(2 ** child.restarts, 30) : 1);
      this.#log.info(`node ${child.id} (pid ${child.pid}) exited (${child.lastExit}); restarting in ${delay} ms`);
      setTimeout(() => {
        if (this.#stopping) return;
        child.restarts++;
        this.#spawn(child);
      }, delay).unref();
    });
  }

  status(): UpStatus {
    const st = this.#balancer!.status();
    return {
      ...st,
      supervisor: { pid: process.pid, data: this.#dataDir, store: redactStoreUrl(this.#store), replication: this.#config.replication, apps: this.#config.app },
      children: this.#children.map((c) => ({ id: c.id, pid: c.process === null ? 0 : c.pid, address: c.address, restarts: c.restarts, lastExit: c.lastExit })),
    };
  }

  async #stop(): Promise<void> {
    this.#stopping = true;
    this.#log.info('sipfleet up: stopping');
    await Promise.all(this.#children.map((c) => new Promise<void>((resolve) => {
      const p = c.process;
      if (p === null || p.exitCode !== null || p.signalCode !== null) {
        resolve();
        return;
      }
      const kill = setTimeout(() => p.kill('SIGKILL'), 5_000);
      p.once('exit', () => { clearTimeout(kill); resolve(); });
      p.kill('SIGTERM');
    })));
    await this.#admin?.close();
    await this.#balancer?.close();
  }
}
