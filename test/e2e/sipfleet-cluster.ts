import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../helpers/ports.ts';
import { spawnProcess, type ProcessHandle } from '../helpers/proc.ts';
import { makeTempDir } from '../helpers/tmp.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI = path.join(root, 'src/cli/main.ts');

export interface ClusterNode {
  id: string;
  pid: number;
  state: 'up' | 'draining' | 'dead';
  sip: string[];
  calls: number;
  settingUp: number;
  unanswered: number;
  unknownDialogs: number;
  replication: { writes: number; bytes: number; failovers: number } | null;
  traffic: { newCalls: number; requests: number; responses: number };
  /** The node's own admin endpoint (its /metrics). */
  admin: string | null;
  /** Since its last heartbeat, when the status was read (ms). */
  heartbeatAgeMs: number;
}

export interface ClusterStatus {
  external: string[];
  internal: string[];
  control: string;
  nodes: ClusterNode[];
  counters: Record<string, number>;
  children?: Array<{ id: string; pid: number; restarts: number }>;
}

export interface Cluster {
  readonly process: ProcessHandle;
  /** host:port of the balancer's external side. */
  readonly sip: string;
  readonly data: string;
  readonly adminUrl: string;
  status(): Promise<ClusterStatus>;
  node(id: string): Promise<ClusterNode>;
  /** Runs `sipfleet <args>` (status, drain…) in the cluster's data folder; resolves with its exit and output. */
  cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }>;
  stop(): Promise<void>;
}

/** `sipfleet up` from the sources, in a fresh data folder; resolves when it says the cluster is ready. */
export async function startCluster(args: readonly string[], env?: NodeJS.ProcessEnv): Promise<Cluster> {
  const data = makeTempDir('sipfleet-up-');
  const port = await freePort('127.0.0.1');
  const sip = `127.0.0.1:${port}`;
  const proc = spawnProcess(process.execPath, ['--import', 'tsx', CLI, 'up', '--listen', sip, '--node-port', '0', '--data', data, ...args], {
    cwd: root, env: env === undefined ? undefined : { ...process.env, ...env }, name: `sipfleet up ${args.join(' ')}`, maxBuffer: 1024 * 1024,
  });
  try {
    await proc.waitForOutput(/cluster ready/, 30_000, 'stdout');
  } catch (err) {
    await proc.stop(3000);
    throw new Error(`${(err as Error).message}\nstdout: ${proc.stdout.slice(-3000)}\nstderr: ${proc.stderr.slice(-3000)}`);
  }
  const adminUrl = (JSON.parse(readFileSync(path.join(data, 'admin.json'), 'utf8')) as { url: string }).url;
  const status = async (): Promise<ClusterStatus> => (await (await fetch(`${adminUrl}/status`)).json()) as ClusterStatus;
  return {
    process: proc, sip, data, adminUrl, status,
    async node(id) {
      const n = (await status()).nodes.find((x) => x.id === id);
      if (n === undefined) throw new Error(`no node ${id}`);
      return n;
    },
    async cli(cliArgs) {
      const p = spawnProcess(process.execPath, ['--import', 'tsx', CLI, ...cliArgs, '--data', data], { cwd: root, name: `sipfleet ${cliArgs.join(' ')}` });
      const exit = await p.exited;
      return { code: exit.code, stdout: p.stdout, stderr: p.stderr };
    },
    async stop() {
      await proc.stop(8000);
    },
  };
}

/** Polls `check` every 20 ms until it returns true; fails after `timeoutMs` with `what`. */
export async function waitUntil(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/**
 * Waits until no node has a call in `field` (being set up, or not answered at all), as told by heartbeats sent
 * after the last new call reached the balancer (a heartbeat older than that INVITE cannot count it). Pause new calls
 * first (SIPp's 'p' on its control port): under a steady rate there is always a call being set up.
 */
export function waitForQuiet(cluster: Cluster, field: 'settingUp' | 'unanswered', timeoutMs = 5_000): Promise<void> {
  let seen = -1;
  let since = 0;
  return waitUntil(`no call ${field}`, async () => {
    const st = await cluster.status();
    const now = Date.now();
    const newCalls = st.nodes.reduce((a, n) => a + n.traffic.newCalls, 0);
    if (newCalls !== seen) {
      seen = newCalls;
      since = now;
      return false;
    }
    return st.nodes.every((n) => n.state === 'dead' || (n[field] === 0 && now - n.heartbeatAgeMs > since + 20));
  }, timeoutMs);
}
