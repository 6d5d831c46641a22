/**
 * Failover latency: how soon after a node dies is the first message of one of its calls answered?
 *
 * `sipfleet up --nodes 3 --app uas` (ConfirmedDialog on the embedded SQLite store); a minimal SIP UAC written here
 * over one UDP socket (independent of src/: hand-built INVITE / ACK / BYE) sets up 150 calls through the balancer.
 * It keeps each dialog as RFC 3261 §12.1.2 says: route set = the 200's Record-Route in reverse order, remote
 * target = its Contact, remote tag = its To tag. The Contact's host:port is the node's own address, which
 * status().nodes[].sip maps to a node. The node holding the most calls is SIGKILLed; in the same tick the UAC
 * sends a BYE for every one of its calls (retransmitted as an RFC 3261 UDP client does: Timer E from T1 = 500 ms,
 * doubling, capped at T2 = 4 s, given up at Timer F = 64·T1). For each, the time from the kill to its 200 OK is
 * recorded. Target: every BYE answered 200, p99 < 1 s. The survivors' calls are then hung up too (200 expected).
 *
 *   node --import tsx --test test/e2e/failover-latency.test.ts
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { after, test } from 'node:test';
import { killAll } from '../helpers/proc.ts';
import { startCluster, waitUntil, type Cluster } from './sipfleet-cluster.ts';

after(() => killAll());

const CALLS = 150;
/** INVITEs in flight at once while setting the calls up. */
const SETUP_WINDOW = 25;
const T1 = 500;
const T2 = 4000;
const TIMER_F = 64 * T1;
const TARGET_P99_MS = 1000;

// ---- a minimal SIP UAC over UDP -----------------------------------------------------------------------------

const COMPACT: Record<string, string> = { v: 'via', f: 'from', t: 'to', i: 'call-id', m: 'contact', l: 'content-length', c: 'content-type', k: 'supported' };

interface Response {
  status: number;
  reason: string;
  /** Header values in order, by lower-case full name (a header line listing several values counts as several). */
  headers: Map<string, string[]>;
  raw: string;
}

/** Splits a header value at the commas that separate values (not those inside <...> or "..."). */
function splitValues(v: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let quoted = false;
  let start = 0;
  for (let i = 0; i < v.length; i++) {
    const c = v[i];
    if (quoted) {
      if (c === '\\') i++;
      else if (c === '"') quoted = false;
    } else if (c === '"') quoted = true;
    else if (c === '<') depth++;
    else if (c === '>') depth--;
    else if (c === ',' && depth === 0) {
      out.push(v.slice(start, i).trim());
      start = i + 1;
    }
  }
  out.push(v.slice(start).trim());
  return out.filter((x) => x !== '');
}

/** Headers whose values may be listed comma-separated on one line (those this UAC reads). */
const LISTS = new Set(['via', 'record-route', 'route', 'contact']);

function parseResponse(text: string): Response | null {
  const m = /^SIP\/2\.0 (\d{3}) ([^\r\n]*)\r\n/.exec(text);
  if (m === null) return null;
  const end = text.indexOf('\r\n\r\n');
  const head = text.slice(m[0].length, end < 0 ? undefined : end).replace(/\r\n[ \t]+/g, ' '); // unfold
  const headers = new Map<string, string[]>();
  for (const line of head.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    let name = line.slice(0, colon).trim().toLowerCase();
    name = COMPACT[name] ?? name;
    const value = line.slice(colon + 1).trim();
    const list = headers.get(name) ?? [];
    list.push(...(LISTS.has(name) ? splitValues(value) : [value]));
    headers.set(name, list);
  }
  return { status: Number(m[1]), reason: m[2] ?? '', headers, raw: text };
}

const first = (r: Response, name: string): string | undefined => r.headers.get(name)?.[0];
const param = (v: string, p: string): string | undefined => new RegExp(`;\\s*${p}=([^;>,\\s]+)`, 'i').exec(v)?.[1];
/** The URI of a name-addr (<uri>) or of an addr-spec without brackets. */
function uriOf(v: string): string {
  const lt = v.indexOf('<');
  if (lt >= 0) return v.slice(lt + 1, v.indexOf('>', lt));
  const semi = v.indexOf(';');
  return (semi < 0 ? v : v.slice(0, semi)).trim();
}
/** host and port a sip: URI sends to (no DNS here: loopback addresses; default port 5060). */
function hostPortOf(uri: string): { host: string; port: number } {
  const m = /^sips?:(?:[^@;>]*@)?(\[[^\]]+\]|[^:;>?]+)(?::(\d+))?/i.exec(uri);
  if (m === null) throw new Error(`not a SIP URI: ${uri}`);
  return { host: (m[1] ?? '').replace(/^\[|\]$/g, ''), port: m[2] === undefined ? 5060 : Number(m[2]) };
}

interface Dialog {
  callId: string;
  localTag: string;
  remoteTag: string;
  /** From / To header values as the UAC sends them in the dialog. */
  from: string;
  to: string;
  cseq: number;
  /** The remote target (the 200's Contact URI). */
  target: string;
  /** Route set, in the order this UAC puts it in Route headers (the 200's Record-Route reversed). */
  routes: string[];
  /** The node's host:port (the Contact's), as a key into status().nodes[].sip. */
  contactHostPort: string;
}

interface ClientTx {
  branch: string;
  method: string;
  resolve: (r: Response) => void;
  reject: (e: Error) => void;
  provisional: boolean;
  timer: NodeJS.Timeout | null;
  deadline: NodeJS.Timeout;
  sends: number;
}

class Uac {
  readonly sock = dgram.createSocket('udp4');
  readonly ip = '127.0.0.1';
  port = 0;
  readonly #txs = new Map<string, ClientTx>();
  /** 2xx to INVITE by Call-ID, once ACKed: a retransmitted 2xx gets the same ACK again (§13.2.2.4). */
  readonly #acks = new Map<string, { data: string; host: string; port: number }>();
  /** Responses nothing waited for (after their transaction ended). */
  strays = 0;
  retransmissions = 0;
  /** Socket errors after the bind (none expected: an unconnected UDP socket is not told of ICMP errors). */
  readonly errors: string[] = [];

  constructor(readonly proxy: { host: string; port: number }) {}

  async open(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.sock.once('error', reject);
      this.sock.bind(0, this.ip, () => resolve());
    });
    this.port = this.sock.address().port;
    this.sock.on('error', (e) => { this.errors.push(e.message); });
    this.sock.on('message', (buf) => this.#onMessage(buf.toString('latin1')));
  }

  close(): void {
    for (const tx of [...this.#txs.values()]) {
      this.#end(tx);
      tx.reject(new Error(`${tx.method} ${tx.branch}: the UAC was closed`));
    }
    this.sock.close();
  }

  #onMessage(text: string): void {
    const r = parseResponse(text);
    if (r === null) return; // this UAC takes no requests
    const branch = param(first(r, 'via') ?? '', 'branch') ?? '';
    const method = /\d+\s+(\S+)/.exec(first(r, 'cseq') ?? '')?.[1] ?? '';
    const tx = this.#txs.get(branch);
    if (tx === undefined || tx.method !== method) {
      // A retransmitted 2xx to an INVITE whose transaction is over: ACK it again.
      const ack = method === 'INVITE' && r.status >= 200 && r.status < 300 ? this.#acks.get(first(r, 'call-id') ?? '') : undefined;
      if (ack !== undefined) this.#send(ack.data, ack.host, ack.port);
      else this.strays++;
      return;
    }
    if (r.status < 200) {
      tx.provisional = true;
      return;
    }
    this.#end(tx);
    tx.resolve(r);
  }

  #end(tx: ClientTx): void {
    if (tx.timer !== null) clearTimeout(tx.timer);
    clearTimeout(tx.deadline);
    this.#txs.delete(tx.branch);
  }

  #send(data: string, host: string, port: number): void {
    this.sock.send(data, port, host);
  }

  /**
   * Sends a request and resolves with its final response. Retransmits as an RFC 3261 UDP client transaction:
   * INVITE (Timer A) every T1·2^n until a provisional arrives; non-INVITE (Timer E) T1·2^n capped at T2, at T2
   * once a provisional arrived. Rejects at Timer B / F (64·T1) with no final response.
   */
  #request(method: string, data: string, branch: string, dest: { host: string; port: number }): Promise<Response> {
    return new Promise<Response>((resolve, reject) => {
      const tx: ClientTx = {
        branch, method, resolve, reject, provisional: false, timer: null, sends: 0,
        deadline: setTimeout(() => {
          this.#end(tx);
          reject(new Error(`${method} ${branch}: no final response within ${TIMER_F} ms (${tx.sends} sends)`));
        }, TIMER_F),
      };
      const fire = (interval: number): void => {
        if (tx.sends > 0) this.retransmissions++;
        tx.sends++;
        this.#send(data, dest.host, dest.port);
        if (method === 'INVITE' && tx.provisional) return; // Timer A stops with a provisional
        const next = method === 'INVITE' ? interval * 2 : tx.provisional ? T2 : Math.min(interval * 2, T2);
        tx.timer = setTimeout(() => fire(next), interval);
      };
      this.#txs.set(branch, tx);
      fire(T1);
    });
  }

  #via(branch: string): string {
    return `SIP/2.0/UDP ${this.ip}:${this.port};branch=${branch};rport`;
  }

  /** Sets up a call to `user` at the balancer: INVITE, the 200 OK, ACK. Returns the UAC's side of the dialog. */
  async call(user: string): Promise<Dialog> {
    const callId = `fl-${randomBytes(8).toString('hex')}@${this.ip}`;
    const localTag = randomBytes(5).toString('hex');
    const ruri = `sip:${user}@${this.proxy.host}:${this.proxy.port}`;
    const from = `<sip:caller@${this.ip}>;tag=${localTag}`;
    const branch = `z9hG4bK${randomBytes(8).toString('hex')}`;
    const sdp = `v=0\r\no=uac 1 1 IN IP4 ${this.ip}\r\ns=-\r\nc=IN IP4 ${this.ip}\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n`;
    const invite =
      `INVITE ${ruri} SIP/2.0\r\n` +
      `Via: ${this.#via(branch)}\r\n` +
      `Max-Forwards: 70\r\n` +
      `From: ${from}\r\n` +
      `To: <${ruri}>\r\n` +
      `Call-ID: ${callId}\r\n` +
      `CSeq: 1 INVITE\r\n` +
      `Contact: <sip:caller@${this.ip}:${this.port}>\r\n` +
      `Content-Type: application/sdp\r\n` +
      `Content-Length: ${Buffer.byteLength(sdp, 'latin1')}\r\n\r\n${sdp}`;
    const r = await this.#request('INVITE', invite, branch, this.proxy);
    if (r.status !== 200) throw new Error(`INVITE ${callId}: ${r.status} ${r.reason}`);
    const toHeader = first(r, 'to') ?? '';
    const remoteTag = param(toHeader, 'tag');
    const contact = first(r, 'contact');
    if (remoteTag === undefined || contact === undefined) throw new Error(`INVITE ${callId}: 200 without To tag or Contact\n${r.raw}`);
    const target = uriOf(contact);
    const hp = hostPortOf(target);
    const d: Dialog = {
      callId, localTag, remoteTag, from, to: toHeader, cseq: 1, target,
      routes: [...(r.headers.get('record-route') ?? [])].reverse(), // §12.1.2: the UAC reverses Record-Route
      contactHostPort: `${hp.host}:${hp.port}`,
    };
    // ACK for a 2xx: a transaction of its own (new branch), CSeq number of the INVITE (§13.2.2.4).
    const ack = this.#inDialog(d, 'ACK', 1);
    this.#acks.set(callId, ack);
    this.#send(ack.data, ack.host, ack.port);
    return d;
  }

  /**
   * An in-dialog request, routed as §12.2.1.1 says: with a loose-routing first route (;lr) the Request-URI is the
   * remote target and every route goes in Route headers; with a strict router, the first route becomes the
   * Request-URI and the remote target goes last in Route. It is sent to the first route (or to the target).
   */
  #inDialog(d: Dialog, method: string, cseq: number): { data: string; branch: string; host: string; port: number } {
    const branch = `z9hG4bK${randomBytes(8).toString('hex')}`;
    let ruri = d.target;
    let routes = d.routes;
    if (routes.length > 0 && !/;\s*lr\b/i.test(uriOf(routes[0]!))) {
      ruri = uriOf(routes[0]!);
      routes = [...routes.slice(1), `<${d.target}>`];
    }
    const next = hostPortOf(d.routes.length > 0 ? uriOf(d.routes[0]!) : d.target);
    const data =
      `${method} ${ruri} SIP/2.0\r\n` +
      `Via: ${this.#via(branch)}\r\n` +
      `Max-Forwards: 70\r\n` +
      routes.map((r) => `Route: ${r}\r\n`).join('') +
      `From: ${d.from}\r\n` +
      `To: ${d.to}\r\n` +
      `Call-ID: ${d.callId}\r\n` +
      `CSeq: ${cseq} ${method}\r\n` +
      `Content-Length: 0\r\n\r\n`;
    return { data, branch, ...next };
  }

  /** Sends a BYE in the dialog; resolves with its final response (or rejects at Timer F). */
  bye(d: Dialog): Promise<Response> {
    d.cseq++;
    const m = this.#inDialog(d, 'BYE', d.cseq);
    this.#acks.delete(d.callId);
    return this.#request('BYE', m.data, m.branch, { host: m.host, port: m.port });
  }
}

// ---- the test -----------------------------------------------------------------------------------------------

function percentile(sorted: readonly number[], p: number): number {
  // Nearest rank: the smallest value with at least p% of the values at or below it.
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/** Node id by the host:port of its SIP addresses ("udp:127.0.0.2:40123" -> "127.0.0.2:40123"). */
async function nodesByAddress(cluster: Cluster): Promise<Map<string, { id: string; pid: number }>> {
  const out = new Map<string, { id: string; pid: number }>();
  for (const n of (await cluster.status()).nodes) {
    for (const s of n.sip) out.set(s.replace(/^[a-z]+:/i, ''), { id: n.id, pid: n.pid });
  }
  return out;
}

test(`failover latency: the BYEs of a SIGKILLed node's calls are answered 200, p99 < ${TARGET_P99_MS} ms after the kill`, { timeout: 180_000 }, async () => {
  const cluster = await startCluster(['--nodes', '3', '--app', 'uas', '--restart-delay-ms', '60000']);
  const [host, port] = cluster.sip.split(':') as [string, string];
  const uac = new Uac({ host, port: Number(port) });
  await uac.open();
  try {
    await waitUntil('3 nodes up', async () => (await cluster.status()).nodes.filter((n) => n.state === 'up').length === 3, 10_000);
    const byAddress = await nodesByAddress(cluster);

    // 150 calls, SETUP_WINDOW INVITEs in flight at a time.
    const dialogs: Dialog[] = [];
    let nextCall = 0;
    await Promise.all(Array.from({ length: SETUP_WINDOW }, async () => {
      while (nextCall < CALLS) {
        nextCall++;
        dialogs.push(await uac.call('uas'));
      }
    }));
    assert.equal(dialogs.length, CALLS);
    const byNode = new Map<string, Dialog[]>();
    for (const d of dialogs) {
      const node = byAddress.get(d.contactHostPort);
      assert.ok(node !== undefined, `the 200's Contact ${d.target} is no node's address (${[...byAddress.keys()].join(', ')})`);
      byNode.set(node.id, [...(byNode.get(node.id) ?? []), d]);
    }
    assert.ok(dialogs.every((d) => d.routes.length > 0), 'the balancer record-routes the calls');
    // Every call established (ACKed) on its node before the kill: the nodes' own counts reach 150.
    await waitUntil(`${CALLS} calls in progress on the nodes`, async () => (await cluster.status()).nodes.reduce((a, n) => a + n.calls, 0) === CALLS, 10_000);
    const spread = [...byNode].map(([id, ds]) => `${id} ${ds.length}`).sort().join(', ');

    const [victimId, victimCalls] = [...byNode].sort((a, b) => b[1].length - a[1].length)[0]!;
    const victim = (await cluster.status()).nodes.find((n) => n.id === victimId)!;
    const failoversBefore = (await cluster.status()).counters.failovers ?? 0;

    // The kill, and in the same tick a BYE for every call of the dead node.
    process.kill(victim.pid, 'SIGKILL');
    const t0 = performance.now();
    const results = await Promise.all(victimCalls.map((d) => uac.bye(d).then(
      (r) => ({ status: r.status, ms: performance.now() - t0, error: '' }),
      (e: unknown) => ({ status: 0, ms: performance.now() - t0, error: (e as Error).message }),
    )));

    const failed = results.filter((r) => r.status !== 200);
    const ms = results.filter((r) => r.status === 200).map((r) => r.ms).sort((a, b) => a - b);
    // The survivors' replication counters reach the balancer with their next heartbeats.
    const takenOver = async (): Promise<number> => (await cluster.status()).nodes.reduce((a, n) => a + (n.state === 'dead' ? 0 : n.replication?.failovers ?? 0), 0);
    await waitUntil('the survivors to report the calls they took over', async () => (await takenOver()) >= ms.length, 3_000).catch(() => undefined);
    const st = await cluster.status();
    const taken = await takenOver();
    if (ms.length > 0) {
      console.log(
        `# calls per node ${spread}; killed ${victimId} (pid ${victim.pid}) holding ${victimCalls.length}: ` +
          `${ms.length}/${victimCalls.length} BYEs answered 200 after the kill in p50 ${percentile(ms, 50).toFixed(1)} ms, ` +
          `p99 ${percentile(ms, 99).toFixed(1)} ms, max ${ms[ms.length - 1]!.toFixed(1)} ms (min ${ms[0]!.toFixed(1)} ms; ` +
          `${ms.filter((x) => x < T1).length} answered before the first retransmission); ` +
          `UAC retransmissions ${uac.retransmissions}; balancer failovers +${(st.counters.failovers ?? 0) - failoversBefore}; calls taken over from the store ${taken}`,
      );
    }
    assert.equal(failed.length, 0, `BYEs of the dead node's calls not answered 200: ${JSON.stringify(failed.slice(0, 5))}`);
    assert.ok(percentile(ms, 99) < TARGET_P99_MS, `p99 ${percentile(ms, 99).toFixed(1)} ms >= ${TARGET_P99_MS} ms`);

    // The survivors' calls end normally too.
    const rest = dialogs.filter((d) => !victimCalls.includes(d));
    const restResults = await Promise.all(rest.map((d) => uac.bye(d).then((r) => r.status, (e: unknown) => (e as Error).message)));
    const restFailed = restResults.filter((s) => s !== 200);
    assert.equal(restFailed.length, 0, `BYEs of the survivors' calls not answered 200: ${JSON.stringify(restFailed.slice(0, 5))}`);
    console.log(`# survivors' calls: ${restResults.length} BYEs answered 200`);
    await waitUntil('0 calls in progress on the survivors', async () => (await cluster.status()).nodes.reduce((a, n) => a + n.calls, 0) === 0, 10_000);
  } finally {
    uac.close();
    await cluster.stop();
  }
});
