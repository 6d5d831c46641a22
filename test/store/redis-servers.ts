/**
 * Private Redis servers for the tests that need to stop one, or need Sentinel or Cluster: each runs Debian's
 * redis-server on its own loopback port with nothing persisted, and is killed by pid when the test process
 * ends (test/helpers/proc.ts). The shared 127.0.0.1:6379 server is never touched.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { freePortInRange } from '../helpers/ports.ts';
import { spawnProcess, type ProcessHandle } from '../helpers/proc.ts';
import { makeTempDir } from '../helpers/tmp.ts';

const REDIS_SERVER = '/usr/bin/redis-server';
const REDIS_CLI = '/usr/bin/redis-cli';

export interface RedisServer {
  port: number;
  proc: ProcessHandle;
  stop(): Promise<void>;
}

function requireBinaries(): void {
  for (const bin of [REDIS_SERVER, REDIS_CLI]) {
    if (!existsSync(bin)) throw new Error(`${bin} is missing: install Debian's redis-server package (apt-get install -y redis-server)`);
  }
}

/** A port whose cluster bus port (port + 10000) is free too, below 55536 so the bus port is valid. */
async function portPair(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = await freePortInRange('127.0.0.1', 20000, 29999, 'tcp');
    const bus = await freePortInRange('127.0.0.1', port + 10000, port + 10000, 'tcp').catch(() => null);
    if (bus !== null) return port;
  }
  throw new Error('no free port pair for a Redis Cluster node');
}

export async function startRedis(args: string[] = [], port?: number): Promise<RedisServer> {
  requireBinaries();
  const p = port ?? (await portPair());
  const dir = makeTempDir(`redis-${p}`);
  const proc = spawnProcess(
    REDIS_SERVER,
    ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--logfile', '', ...args],
    { name: `redis-server:${p}` },
  );
  await proc.waitForOutput(/Ready to accept connections/, 10_000);
  return { port: p, proc, stop: async () => void (await proc.stop(2000, 'SIGKILL')) };
}

/** One master and one Sentinel monitoring it as 'mymaster' (quorum 1). */
export async function startSentinel(): Promise<{ master: RedisServer; sentinel: RedisServer; stop(): Promise<void> }> {
  const master = await startRedis();
  const port = await portPair();
  const dir = makeTempDir(`sentinel-${port}`);
  const conf = path.join(dir, 'sentinel.conf'); // Sentinel rewrites its config file, so it must be writable
  writeFileSync(conf, `port ${port}\nbind 127.0.0.1\ndir ${dir}\nsentinel monitor mymaster 127.0.0.1 ${master.port} 1\n`);
  const proc = spawnProcess(REDIS_SERVER, [conf, '--sentinel'], { name: `redis-sentinel:${port}` });
  await proc.waitForOutput(/\+monitor master mymaster/, 10_000);
  const sentinel: RedisServer = { port, proc, stop: async () => void (await proc.stop(2000, 'SIGKILL')) };
  return {
    master,
    sentinel,
    async stop() {
      await sentinel.stop();
      await master.stop();
    },
  };
}

/** Three masters, no replicas, all 16384 slots assigned; resolves once every node reports cluster_state:ok. */
export async function startCluster(): Promise<{ nodes: RedisServer[]; stop(): Promise<void> }> {
  const nodes: RedisServer[] = [];
  for (let i = 0; i < 3; i++) {
    const port = await portPair();
    const dir = makeTempDir(`cluster-${port}`);
    nodes.push(await startRedis(['--cluster-enabled', 'yes', '--cluster-config-file', path.join(dir, 'nodes.conf'), '--cluster-node-timeout', '3000'], port));
  }
  const stop = async (): Promise<void> => {
    for (const n of nodes) await n.stop();
  };
  const create = spawnSync(
    REDIS_CLI,
    ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'],
    { encoding: 'utf8', timeout: 30_000 },
  );
  if (create.status !== 0) {
    await stop();
    throw new Error(`redis-cli --cluster create failed: ${create.stdout}\n${create.stderr}`);
  }
  const deadline = Date.now() + 15_000;
  for (const n of nodes) {
    for (;;) {
      const info = spawnSync(REDIS_CLI, ['-p', String(n.port), 'cluster', 'info'], { encoding: 'utf8', timeout: 5000 });
      if (/cluster_state:ok/.test(info.stdout)) break;
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`Redis Cluster node ${n.port} not ok: ${info.stdout}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { nodes, stop };
}
