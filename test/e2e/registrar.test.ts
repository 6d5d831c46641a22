import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { computeDigestResponse, computeHa1 } from '../../src/server/auth/digest.ts';
import { parseMessage } from '../../src/sip/message/parser.ts';
import type { SipResponse } from '../../src/sip/message/message.ts';
import { openStores } from '../../src/store/index.ts';
import { freePort, freePortInRange } from '../helpers/ports.ts';
import { killAll, spawnProcess } from '../helpers/proc.ts';
import { runSipp, SCENARIO_UAC_RR, SCENARIO_UAS_RR, startSippUas } from '../helpers/sipp.ts';
import { startSipfleetNode } from './sipfleet-node.ts';

after(() => killAll());

const run = randomBytes(4).toString('hex');
const sqliteFile = path.join(tmpdir(), `sipfleet-e2e-${run}.db`);
after(() => rmSync(sqliteFile, { force: true }));

// One store each: the embedded default, Redis and PostgreSQL (both started by the machine before the session).
const stores: Array<[string, string]> = [
  ['SQLite (embedded, shared by the processes of one host)', `sqlite:${sqliteFile}`],
  ['Redis', 'redis://127.0.0.1:6379/0'],
  ['PostgreSQL', 'postgres://postgres@127.0.0.1:5432/test'],
];

/** sipsak registers `user` at `node` with a Contact pointing at `contact`. */
async function sipsakRegister(user: string, node: string, contact: string): Promise<void> {
  const proc = spawnProcess('sipsak', ['-U', '-C', contact, '-x', '600', '-s', `sip:${user}@${node}`, '-i'], { name: 'sipsak register' });
  const info = await proc.exited;
  assert.equal(info.code, 0, `sipsak register: ${proc.stdout} ${proc.stderr}`);
}

describe('shared location table: a REGISTER on node A is visible to node B', () => {
  for (const [name, url] of stores) {
    test(`${name}: sipsak registers at A, a call to the AOR sent to B reaches the registered contact`, async () => {
      const user = `alice-${run}`;
      const uas = await startSippUas({ localIp: '127.0.0.3', sf: SCENARIO_UAS_RR });
      // sipsak cuts five-digit ports in its URIs: four-digit ones for the nodes.
      const portA = await freeFourDigitPort('127.0.0.2');
      const portB = await freeFourDigitPort('127.0.0.2', portA + 1);
      const nodeA = await startSipfleetNode(['--app', 'proxy', '--listen', `127.0.0.2:${portA}`, '--store', url, '--node-id', 'A']);
      const nodeB = await startSipfleetNode(['--app', 'proxy', '--listen', `127.0.0.2:${portB}`, '--store', url, '--node-id', 'B']);
      try {
        await sipsakRegister(user, `127.0.0.2:${portA}`, `sip:${user}@127.0.0.3:${uas.localPort}`);
        // The AOR is sip:USER@127.0.0.2 for both nodes (the port is not part of an AOR).
        // The caller follows Record-Route, so ACK and BYE reach the callee's Contact through node B.
        const r = await runSipp({ sf: SCENARIO_UAC_RR, remote: `127.0.0.2:${portB}`, localIp: '127.0.0.1', service: user, rate: 10, maxCalls: 20, timeoutSec: 30 });
        assert.equal(r.failed, 0, r.stdout.slice(-1500));
        assert.equal(r.successful, 20);
      } finally {
        await nodeA.stop();
        await nodeB.stop();
        const s = await openStores(url);
        await s.location.removeAll(`sip:${user}@127.0.0.2`);
        await s.close();
      }
      const res = await uas.stop({ graceful: false });
      assert.ok(res.callsCreated >= 20, `the registered contact got the calls (${res.callsCreated})`);
    });
  }
});

function freeFourDigitPort(host: string, from = 5070): Promise<number> {
  return freePortInRange(host, from, 9999);
}

/** A REGISTER client over UDP that computes digest responses itself (RFC 7616), independent of the server. */
class RegisterClient {
  readonly socket = dgram.createSocket('udp4');
  #cseq = 0;
  readonly callId = `reg-${randomBytes(6).toString('hex')}`;

  async open(): Promise<void> {
    await new Promise<void>((r) => this.socket.bind(0, '127.0.0.1', () => r()));
  }

  async register(target: { host: string; port: number }, user: string, authorization?: string): Promise<SipResponse> {
    const port = this.socket.address().port;
    const lines = [
      `REGISTER sip:127.0.0.2 SIP/2.0`,
      `Via: SIP/2.0/UDP 127.0.0.1:${port};branch=z9hG4bK${randomBytes(6).toString('hex')};rport`,
      `Max-Forwards: 70`,
      `From: <sip:${user}@127.0.0.2>;tag=${randomBytes(4).toString('hex')}`,
      `To: <sip:${user}@127.0.0.2>`,
      `Call-ID: ${this.callId}`,
      `CSeq: ${++this.#cseq} REGISTER`,
      `Contact: <sip:${user}@127.0.0.1:${port}>;expires=300`,
      ...(authorization === undefined ? [] : [`Authorization: ${authorization}`]),
      `Content-Length: 0`,
      '', '',
    ];
    const got = new Promise<SipResponse>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no response to REGISTER within 3 s')), 3000);
      this.socket.once('message', (m) => { clearTimeout(timer); resolve(parseMessage(m) as SipResponse); });
    });
    this.socket.send(Buffer.from(lines.join('\r\n')), target.port, target.host);
    return got;
  }
}

function challengeParams(header: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of header.matchAll(/(\w+)=(?:"([^"]*)"|([^,\s]+))/g)) out[m[1]!.toLowerCase()] = m[2] ?? m[3]!;
  return out;
}

function authorization(ch: Record<string, string>, user: string, password: string, uri: string, algorithm: 'MD5' | 'SHA-256'): string {
  const cnonce = randomBytes(8).toString('hex');
  const nc = '00000001';
  const ha1 = computeHa1(algorithm, user, ch.realm!, password);
  const response = computeDigestResponse({ algorithm, ha1, nonce: ch.nonce!, method: 'REGISTER', uri, qop: 'auth', nc, cnonce });
  return `Digest username="${user}", realm="${ch.realm}", nonce="${ch.nonce}", uri="${uri}", response="${response}", ` +
    `algorithm=${algorithm}, cnonce="${cnonce}", qop=auth, nc=${nc}${ch.opaque !== undefined ? `, opaque="${ch.opaque}"` : ''}`;
}

test('digest: REGISTER challenged on node A, answered on node B and accepted; wrong password 401; stale nonce', async () => {
  const url = `sqlite:${sqliteFile}`;
  const user = `bob-${run}`;
  const setup = await openStores(url);
  await setup.credentials.set(user, 'sipfleet.test', 'zanzibar');
  await setup.close();
  const env = { ...process.env, SIPFLEET_AUTH_SECRET: 'a-cluster-secret-of-32-bytes-len' };
  const portA = await freePort('127.0.0.2');
  const portB = await freePort('127.0.0.3');
  const common = ['--app', 'proxy', '--store', url, '--auth-realm', 'sipfleet.test', '--auth-nonce-ttl-ms', '1500'];
  const nodeA = await startSipfleetNode([...common, '--listen', `127.0.0.2:${portA}`], env);
  const nodeB = await startSipfleetNode([...common, '--listen', `127.0.0.3:${portB}`], env);
  const client = new RegisterClient();
  await client.open();
  try {
    const challenge = await client.register({ host: '127.0.0.2', port: portA }, user);
    assert.equal(challenge.status, 401);
    const offered = challenge.getAll('www-authenticate');
    assert.ok(offered.some((h) => /algorithm=SHA-256/.test(h)) && offered.some((h) => /algorithm=MD5/.test(h)), offered.join(' | '));
    for (const algorithm of ['SHA-256', 'MD5'] as const) {
      const ch = challengeParams(offered.find((h) => h.includes(`algorithm=${algorithm}`))!);
      const ok = await client.register({ host: '127.0.0.3', port: portB }, user, authorization(ch, user, 'zanzibar', 'sip:127.0.0.2', algorithm));
      assert.equal(ok.status, 200, `${algorithm}: node B accepts node A's nonce`);
      assert.match(ok.get('contact') ?? '', /expires=/);
    }
    const ch = challengeParams(offered.find((h) => h.includes('algorithm=SHA-256'))!);
    const wrong = await client.register({ host: '127.0.0.3', port: portB }, user, authorization(ch, user, 'wrong', 'sip:127.0.0.2', 'SHA-256'));
    assert.equal(wrong.status, 401, 'wrong password: challenged again');
    assert.ok(wrong.getAll('www-authenticate').every((h) => !/stale=true/i.test(h)), 'a wrong password is not "stale"');
    // Let the nonce age past its 1.5 s lifetime: the right answer to an old nonce gets stale=true.
    await new Promise((r) => setTimeout(r, 1700));
    const stale = await client.register({ host: '127.0.0.3', port: portB }, user, authorization(ch, user, 'zanzibar', 'sip:127.0.0.2', 'SHA-256'));
    assert.equal(stale.status, 401);
    assert.ok(stale.getAll('www-authenticate').some((h) => /stale=true/i.test(h)), stale.getAll('www-authenticate').join(' | '));
  } finally {
    client.socket.close();
    await nodeA.stop();
    await nodeB.stop();
  }
});

