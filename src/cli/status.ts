import { adminToken } from '../admin/balancer-admin.ts';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { NodeStatus } from '../balancer/balancer.ts';
import { ConfigError } from './config.ts';
import { ADMIN_FILE, type UpStatus } from './up.ts';

/** The admin URL: --admin, else the one `sipfleet up` wrote in its data folder. */
function adminUrl(admin: string | undefined, data: string | undefined): string {
  if (admin !== undefined) {
    if (!/^https?:\/\//.test(admin)) throw new ConfigError('--admin', `expected an http:// URL, got "${admin}"`);
    return admin.replace(/\/$/, '');
  }
  const file = path.resolve(data ?? 'sipfleet-data', ADMIN_FILE);
  try {
    return (JSON.parse(readFileSync(file, 'utf8')) as { url: string }).url;
  } catch {
    throw new ConfigError('--admin', `no cluster runs here (${file} not found): run "sipfleet up" in this folder, or give --admin URL or --data DIR`);
  }
}

async function fetchJson(url: string, method = 'GET'): Promise<{ status: number; body: unknown }> {
  let res: Response;
  try {
    const token = adminToken();
    res = await fetch(url, { method, signal: AbortSignal.timeout(5_000), headers: token === null ? {} : { authorization: `Bearer ${token}` } });
  } catch (err) {
    throw new ConfigError('--admin', `cannot reach ${url}: ${(err as Error).message}`);
  }
  if (res.status === 401) throw new ConfigError('SIPFLEET_ADMIN_TOKEN', `${url} wants the admin token: set it in the environment`);
  return { status: res.status, body: await res.json() };
}

type Row = Pick<NodeStatus, 'id' | 'pid' | 'sip' | 'state' | 'calls' | 'replication'> & { newCalls: number; restarts: number | null };

/** `sipfleet status [--json]`: each node's id, pid, SIP address, state and calls in progress. */
export async function runStatus(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { json: { type: 'boolean', default: false }, admin: { type: 'string' }, data: { type: 'string' } }, strict: true });
  const { body } = await fetchJson(`${adminUrl(values.admin, values.data)}/status`);
  const st = body as Partial<UpStatus> & { nodes: NodeStatus[] };
  const rows: Row[] = st.nodes.map((n) => ({
    id: n.id, pid: n.pid, sip: n.sip, state: n.state, calls: n.calls, newCalls: n.traffic.newCalls, replication: n.replication ?? null,
    restarts: st.children?.find((c) => c.id === n.id)?.restarts ?? null,
  }));
  for (const c of st.children ?? []) {
    if (!rows.some((r) => r.id === c.id)) rows.push({ id: c.id, pid: c.pid, sip: [c.address], state: 'dead', calls: 0, newCalls: 0, restarts: c.restarts, replication: null });
  }
  rows.sort((a, b) => (a.id < b.id ? -1 : 1));
  if (values.json) {
    process.stdout.write(JSON.stringify({ ...st, rows }, null, 2) + '\n');
    return 0;
  }
  const table = [['NODE', 'PID', 'SIP', 'STATE', 'CALLS', 'NEW CALLS', 'RESTARTS', 'REPL WRITES', 'TAKEN OVER']];
  for (const r of rows) {
    table.push([r.id, String(r.pid), r.sip.join(' '), r.state, String(r.calls), String(r.newCalls), r.restarts === null ? '-' : String(r.restarts),
      r.replication === null ? '-' : String(r.replication.writes), r.replication === null ? '-' : String(r.replication.failovers)]);
  }
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  process.stdout.write(`balancer ${(st.external ?? []).join(' ')} (internal ${(st.internal ?? []).join(' ')})\n`);
  for (const row of table) process.stdout.write(row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd() + '\n');
  return 0;
}

/** `sipfleet drain NODE [--undo]`: the node takes no new calls; its calls in progress go on. */
export async function runDrain(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: { undo: { type: 'boolean', default: false }, admin: { type: 'string' }, data: { type: 'string' } }, strict: true,
  });
  const id = positionals[0];
  if (id === undefined || positionals.length > 1) throw new ConfigError('drain', 'usage: sipfleet drain NODE [--undo] [--admin URL] [--data DIR]');
  const { status, body } = await fetchJson(`${adminUrl(values.admin, values.data)}/nodes/${encodeURIComponent(id)}/${values.undo ? 'undrain' : 'drain'}`, 'POST');
  if (status !== 200) {
    process.stderr.write(`sipfleet: ${(body as { error?: string }).error ?? `HTTP ${status}`}\n`);
    return 1;
  }
  process.stdout.write(`${id}: ${values.undo ? 'takes new calls again' : 'draining (no new calls; calls in progress go on)'}\n`);
  return 0;
}
