import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { AuthConfigError, DigestParseError } from '../../../src/server/auth/errors.ts';
import {
  computeDigestResponse,
  computeHa1,
  digestAlgorithm,
  DigestAuthenticator,
  type AuthResult,
  type CredentialLookup,
  type DigestAuthenticatorOptions,
  type StoredCredentials,
} from '../../../src/server/auth/digest.ts';
import { parseMessage, SipRequest, type SipResponse } from '../../../src/sip/message/index.ts';

// ---- independent reference: node:crypto only, nothing from src/server/auth ----

type Alg = 'MD5' | 'SHA-256' | 'SHA-512-256';
const NODE_HASH: Record<Alg, string> = { MD5: 'md5', 'SHA-256': 'sha256', 'SHA-512-256': 'sha512-256' };

function H(alg: Alg, s: string): string {
  return createHash(NODE_HASH[alg]).update(s, 'utf8').digest('hex');
}

const REALM = 'example.com';
const SECRET = 'a-cluster-secret-of-enough-bytes';
const T0 = Date.UTC(2030, 0, 1);

const USERS = new Map<string, StoredCredentials>([
  ['alice', { password: 'wonderland' }],
  // HA1 only, as a store that never keeps passwords would have it
  ['bob', { ha1Md5: H('MD5', `bob:${REALM}:builder`), ha1Sha256: H('SHA-256', `bob:${REALM}:builder`).toUpperCase() }],
  ['jürgen', { password: 'pässwörd' }],
]);

function makeLookup(calls: Array<[string, string]> = []): CredentialLookup {
  return async (username, realm) => {
    calls.push([username, realm]);
    return USERS.get(username) ?? null;
  };
}

function clock(start = T0): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => { t += ms; } };
}

function authenticator(o: Partial<DigestAuthenticatorOptions> = {}): DigestAuthenticator {
  return new DigestAuthenticator({ realm: REALM, secret: SECRET, credentials: makeLookup(), ...o });
}

let branch = 0;

/** A request as it would arrive from the wire (parsed from bytes: header values are latin1 byte strings). */
function request(o: { method?: string; uri?: string; auth?: string[]; header?: string } = {}): SipRequest {
  const method = o.method ?? 'REGISTER';
  const lines = [
    `${method} ${o.uri ?? 'sip:example.com'} SIP/2.0`,
    `Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK${++branch}`,
    'Max-Forwards: 70',
    'From: <sip:alice@example.com>;tag=f1',
    'To: <sip:alice@example.com>',
    'Call-ID: call-1@192.0.2.10',
    `CSeq: 2 ${method}`,
    ...(o.auth ?? []).map((a) => `${o.header ?? 'Authorization'}: ${a}`),
    'Content-Length: 0',
    '',
    '',
  ];
  const m = parseMessage(Buffer.from(lines.join('\r\n'), 'utf8'));
  assert.ok(m instanceof SipRequest);
  m.validate();
  return m;
}

/** The Digest challenges of a response, parsed the simple way a client might (a regex, not our parser). */
function challenges(res: SipResponse, header = 'WWW-Authenticate'): Array<Record<string, string>> {
  return res.getAll(header).map((v) => {
    assert.match(v, /^Digest /);
    const out: Record<string, string> = {};
    for (const m of v.slice(7).matchAll(/([A-Za-z-]+)=(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))/g)) {
      out[m[1]!.toLowerCase()] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3]!;
    }
    return out;
  });
}

interface ClientOptions {
  username: string;
  password: string;
  method?: string;
  uri?: string;
  /** Algorithm to claim; default: the challenge's. null: leave the parameter out (means MD5). */
  algorithm?: string | null;
  /** Hash to compute with, when it differs from the claimed algorithm name. */
  hashAs?: Alg;
  qop?: boolean;
  nc?: number;
  cnonce?: string;
  realm?: string;
  nonce?: string;
  opaque?: string | null;
}

/** Builds an Authorization value answering `ch`, as a UAC would (RFC 2617 §3.2.2), with node:crypto. */
function answer(ch: Record<string, string>, o: ClientOptions): string {
  const claimed = o.algorithm === undefined ? ch.algorithm ?? 'MD5' : o.algorithm;
  const alg: Alg = o.hashAs ?? ((claimed ?? 'MD5').toUpperCase() as Alg);
  const realm = o.realm ?? ch.realm!;
  const nonce = o.nonce ?? ch.nonce!;
  const method = o.method ?? 'REGISTER';
  const uri = o.uri ?? 'sip:example.com';
  const ha1 = H(alg, `${o.username}:${realm}:${o.password}`);
  const ha2 = H(alg, `${method}:${uri}`);
  const nc = (o.nc ?? 1).toString(16).padStart(8, '0');
  const cnonce = o.cnonce ?? randomBytes(8).toString('hex');
  const qop = o.qop ?? true;
  const response = qop ? H(alg, `${ha1}:${nonce}:${nc}:${cnonce}:auth:${ha2}`) : H(alg, `${ha1}:${nonce}:${ha2}`);
  const q = (s: string) => '"' + s.replace(/(["\\])/g, '\\$1') + '"';
  let out = `Digest username=${q(o.username)}, realm=${q(realm)}, nonce=${q(nonce)}, uri=${q(uri)}, response=${q(response)}`;
  if (claimed !== null) out += `, algorithm=${claimed}`;
  if (qop) out += `, qop=auth, nc=${nc}, cnonce=${q(cnonce)}`;
  const opaque = o.opaque === undefined ? ch.opaque : o.opaque;
  if (opaque !== undefined && opaque !== null) out += `, opaque=${q(opaque)}`;
  return out;
}

function failed(r: AuthResult): Extract<AuthResult, { ok: false }> {
  assert.equal(r.ok, false, 'expected a challenge');
  return r as Extract<AuthResult, { ok: false }>;
}

/** Gets a challenge from `auth` and picks the one for `alg`. */
async function challengeFor(auth: DigestAuthenticator, alg: Alg = 'SHA-256', header?: string): Promise<Record<string, string>> {
  const r = failed(await auth.authenticate(request()));
  const ch = challenges(r.challenge, header).find((c) => c.algorithm === alg);
  assert.ok(ch, `no ${alg} challenge`);
  return ch;
}

// ---- computations against published vectors ----

test('RFC 2617 §3.5 example (Mufasa / Circle Of Life), checked against node:crypto and the published value', () => {
  const realm = 'testrealm@host.com';
  const nonce = 'dcd98b7102dd2f0e8b11d0f600bfb0c093';
  const ha1 = computeHa1('MD5', 'Mufasa', realm, 'Circle Of Life');
  assert.equal(ha1, H('MD5', 'Mufasa:testrealm@host.com:Circle Of Life'));
  const got = computeDigestResponse({ algorithm: 'MD5', ha1, nonce, method: 'GET', uri: '/dir/index.html', qop: 'auth', nc: '00000001', cnonce: '0a4f113b' });
  const ha2 = H('MD5', 'GET:/dir/index.html');
  assert.equal(got, H('MD5', `${ha1}:${nonce}:00000001:0a4f113b:auth:${ha2}`));
  assert.equal(got, '6629fae49393a05397450978507c4ef1');
  // RFC 2069 form (no qop): H(HA1:nonce:HA2)
  const old = computeDigestResponse({ algorithm: 'MD5', ha1: ha1.toUpperCase(), nonce, method: 'GET', uri: '/dir/index.html', qop: null });
  assert.equal(old, H('MD5', `${ha1}:${nonce}:${ha2}`));
});

test('RFC 7616 §3.9.1 example, MD5 and SHA-256', () => {
  const input = {
    nonce: '7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v',
    method: 'GET',
    uri: '/dir/index.html',
    qop: 'auth',
    nc: '00000001',
    cnonce: 'f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ',
  };
  const md5 = computeDigestResponse({ ...input, algorithm: 'MD5', ha1: computeHa1('MD5', 'Mufasa', 'http-auth@example.org', 'Circle of Life') });
  assert.equal(md5, '8ca523f5e9506fed4657c9700eebdbec');
  const sha = computeDigestResponse({ ...input, algorithm: 'SHA-256', ha1: computeHa1('SHA-256', 'Mufasa', 'http-auth@example.org', 'Circle of Life') });
  assert.equal(sha, '753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1');
  assert.equal(digestAlgorithm('sha-256'), 'SHA-256');
  assert.equal(digestAlgorithm('SHA-512-256'), 'SHA-512-256');
  assert.equal(digestAlgorithm('MD5-sess'), null);
});

// ---- the challenge ----

test('no credentials → 401 with one WWW-Authenticate per algorithm, SHA-256 first, same nonce, To tag added', async () => {
  const auth = authenticator();
  const r = failed(await auth.authenticate(request()));
  assert.equal(r.reason, 'missing');
  const res = r.challenge;
  assert.equal(res.status, 401);
  assert.equal(res.reason, 'Unauthorized');
  assert.equal(res.callId, 'call-1@192.0.2.10');
  assert.equal(res.cseq.seq, 2);
  assert.equal(res.topVia.params.get('branch'), `z9hG4bK${branch}`);
  assert.ok(res.toTag !== null && res.toTag.length > 0, 'a 401 is a final response: To tag');
  const values = res.getAll('WWW-Authenticate');
  assert.equal(values.length, 2);
  assert.match(values[0]!, /^Digest realm="example\.com", nonce="[A-Za-z0-9_-]{43}", opaque="[A-Za-z0-9_-]+", algorithm=SHA-256, qop="auth"$/);
  assert.match(values[1]!, /algorithm=MD5, qop="auth"$/);
  const [a, b] = challenges(res);
  assert.equal(a!.nonce, b!.nonce);
  assert.equal(a!.opaque, b!.opaque);
  assert.ok(!('stale' in a!));
  assert.equal(res.has('Proxy-Authenticate'), false);
  // and it serializes as a SIP message
  assert.match(res.toString(), /^SIP\/2\.0 401 Unauthorized\r\n[\s\S]*WWW-Authenticate: Digest realm="example.com"/);
  // every challenge has its own nonce
  const again = challenges(failed(await auth.authenticate(request())).challenge);
  assert.notEqual(again[0]!.nonce, a!.nonce);
});

test('algorithms option: order and set of offered challenges', async () => {
  const md5First = authenticator({ algorithms: ['MD5', 'SHA-256'] });
  assert.deepEqual(challenges(failed(await md5First.authenticate(request())).challenge).map((c) => c.algorithm), ['MD5', 'SHA-256']);
  const shaOnly = authenticator({ algorithms: ['SHA-256'] });
  assert.deepEqual(challenges(failed(await shaOnly.authenticate(request())).challenge).map((c) => c.algorithm), ['SHA-256']);
});

// ---- round trips ----

for (const alg of ['MD5', 'SHA-256', 'SHA-512-256'] as const) {
  for (const qop of [true, false]) {
    test(`round trip: challenge → client answer → ok (${alg}, ${qop ? 'qop=auth' : 'no qop, RFC 2069'})`, async () => {
      const calls: Array<[string, string]> = [];
      const auth = authenticator({ credentials: makeLookup(calls), algorithms: ['SHA-256', 'MD5', 'SHA-512-256'] });
      for (const [username, password] of [['alice', 'wonderland'], ['bob', 'builder']] as const) {
        if (username === 'bob' && alg === 'SHA-512-256') continue; // bob's store has no HA1 for it
        const ch = await challengeFor(auth, alg);
        const r = await auth.authenticate(request({ auth: [answer(ch, { username, password, qop })] }));
        assert.deepEqual(r, { ok: true, username, algorithm: alg });
      }
      assert.deepEqual(calls[0], ['alice', REALM]);
    });
  }
}

test('round trip with an INVITE to a user URI, and equivalent URI spellings', async () => {
  const auth = authenticator();
  const ch = await challengeFor(auth);
  const uri = 'sip:bob@example.com;transport=udp';
  const ok = await auth.authenticate(request({ method: 'INVITE', uri, auth: [answer(ch, { username: 'alice', password: 'wonderland', method: 'INVITE', uri })] }));
  assert.equal(ok.ok, true);
  // RFC 3261 §19.1.4: host case and parameter case do not matter
  const spelled = 'sip:bob@EXAMPLE.com;transport=UDP';
  const ok2 = await auth.authenticate(request({ method: 'INVITE', uri, auth: [answer(ch, { username: 'alice', password: 'wonderland', method: 'INVITE', uri: spelled, nc: 2 })] }));
  assert.equal(ok2.ok, true);
});

test('no algorithm parameter means MD5', async () => {
  const auth = authenticator();
  const ch = await challengeFor(auth, 'MD5');
  const r = await auth.authenticate(request({ auth: [answer(ch, { username: 'alice', password: 'wonderland', algorithm: null })] }));
  assert.equal(r.ok, true);
  const shaOnly = authenticator({ algorithms: ['SHA-256'] });
  const ch2 = await challengeFor(shaOnly, 'SHA-256');
  const r2 = failed(await shaOnly.authenticate(request({ auth: [answer(ch2, { username: 'alice', password: 'wonderland', algorithm: null })] })));
  assert.equal(r2.reason, 'algorithm');
});

test('UTF-8 username and password: the lookup gets Unicode text, hashes are over UTF-8 bytes', async () => {
  const calls: Array<[string, string]> = [];
  const auth = authenticator({ credentials: makeLookup(calls) });
  const ch = await challengeFor(auth);
  const r = await auth.authenticate(request({ auth: [answer(ch, { username: 'jürgen', password: 'pässwörd' })] }));
  assert.deepEqual(r, { ok: true, username: 'jürgen', algorithm: 'SHA-256' });
  assert.deepEqual(calls, [['jürgen', REALM]]);
});

test('a non-ASCII realm is sent as UTF-8 and matched', async () => {
  const realm = 'zürich.example';
  const auth = authenticator({ realm, credentials: async (u, r) => (u === 'alice' && r === realm ? { password: 'pw' } : null) });
  const res = failed(await auth.authenticate(request())).challenge;
  assert.ok(res.toBuffer().includes(Buffer.from(`realm="${realm}"`, 'utf8')));
  const ch = challenges(res)[0]!;
  // the challenge text is wire bytes; a client decodes it as UTF-8
  const wireRealm = ch.realm!;
  assert.equal(Buffer.from(wireRealm, 'latin1').toString('utf8'), realm);
  const r = await auth.authenticate(request({ auth: [answer({ ...ch, realm }, { username: 'alice', password: 'pw' })] }));
  assert.equal(r.ok, true);
});

// ---- cluster: stateless nonces ----

test('a nonce from one node is accepted by another with the same secret, refused with another secret', async () => {
  const c = clock();
  const nodeA = authenticator({ now: c.now });
  const nodeB = authenticator({ now: c.now, secret: Buffer.from(SECRET) });
  const nodeX = authenticator({ now: c.now, secret: 'some-other-cluster-secret!' });
  const ch = await challengeFor(nodeA);
  c.advance(5_000);
  const creds = answer(ch, { username: 'alice', password: 'wonderland' });
  assert.equal((await nodeB.authenticate(request({ auth: [creds] }))).ok, true);
  const x = failed(await nodeX.authenticate(request({ auth: [creds] })));
  assert.equal(x.reason, 'opaque', 'the opaque is derived from the secret too');
  const x2 = failed(await nodeX.authenticate(request({ auth: [answer(ch, { username: 'alice', password: 'wonderland', opaque: null })] })));
  assert.equal(x2.reason, 'nonce');
  assert.ok(!challenges(x2.challenge).some((v) => 'stale' in v));
});

test('expired nonce with the right password → stale=true on every challenge; with a wrong one → not stale', async () => {
  const c = clock();
  const auth = authenticator({ now: c.now, nonceTtlMs: 1000 });
  const ch = await challengeFor(auth);
  c.advance(999);
  assert.equal((await auth.authenticate(request({ auth: [answer(ch, { username: 'alice', password: 'wonderland' })] }))).ok, true);
  c.advance(2);
  const r = failed(await auth.authenticate(request({ auth: [answer(ch, { username: 'alice', password: 'wonderland', nc: 2 })] })));
  assert.equal(r.reason, 'stale');
  const fresh = challenges(r.challenge);
  assert.equal(fresh.length, 2);
  for (const v of fresh) assert.equal(v.stale, 'true');
  assert.match(r.challenge.getAll('WWW-Authenticate')[0]!, /, stale=true$/);
  assert.notEqual(fresh[0]!.nonce, ch.nonce);
  // the client retries with the new nonce, without asking its user
  const retry = await auth.authenticate(request({ auth: [answer(fresh[0]!, { username: 'alice', password: 'wonderland' })] }));
  assert.equal(retry.ok, true);
  // stale=true would tell a guesser the password was right: not for a wrong one
  const wrong = failed(await auth.authenticate(request({ auth: [answer(ch, { username: 'alice', password: 'guess' })] })));
  assert.equal(wrong.reason, 'credentials');
  assert.ok(!challenges(wrong.challenge).some((v) => 'stale' in v));
});

test('tampered nonce → a fresh challenge, not stale, and no user lookup', async () => {
  const calls: Array<[string, string]> = [];
  const auth = authenticator({ credentials: makeLookup(calls) });
  const ch = await challengeFor(auth);
  const bytes = Buffer.from(ch.nonce!, 'base64url');
  bytes[3]! ^= 0x40; // push the timestamp forward
  const nonce = bytes.toString('base64url');
  const r = failed(await auth.authenticate(request({ auth: [answer(ch, { username: 'alice', password: 'wonderland', nonce })] })));
  assert.equal(r.reason, 'nonce');
  assert.equal(r.challenge.status, 401);
  assert.ok(!challenges(r.challenge).some((v) => 'stale' in v));
  assert.deepEqual(calls, []);
  const foreign = failed(await auth.authenticate(request({ auth: [answer(ch, { username: 'alice', password: 'wonderland', nonce: 'dcd98b7102dd2f0e8b11d0f600bfb0c093' })] })));
  assert.equal(foreign.reason, 'nonce');
});

// ---- refusals ----

test('wrong password and unknown user get the same answer: a fresh challenge', async () => {
  const auth = authenticator();
  const ch = await challengeFor(auth);
  const wrong = failed(await auth.authenticate(request({ auth: [answer(ch, { username: 'alice', password: 'nope' })] })));
  const unknown = failed(await auth.authenticate(request({ auth: [answer(ch, { username: 'mallory', password: 'nope' })] })));
  assert.equal(wrong.reason, 'credentials');
  assert.equal(unknown.reason, 'credentials');
  const shape = (res: SipResponse) => ({
    status: res.status,
    reason: res.reason,
    names: res.headers.map((h) => h.name),
    challenges: challenges(res).map((c) => ({ ...c, nonce: 'x' })),
  });
  assert.deepEqual(shape(wrong.challenge), shape(unknown.challenge));
  // a user whose store has nothing for this algorithm cannot pass either
  const sha512 = authenticator({ algorithms: ['SHA-512-256'] });
  const noHa1 = await challengeFor(sha512, 'SHA-512-256');
  const bob = failed(await sha512.authenticate(request({ auth: [answer(noHa1, { username: 'bob', password: 'builder' })] })));
  assert.equal(bob.reason, 'credentials');
});

test('wrong uri, wrong realm, unsupported algorithm, qop=auth-int, wrong opaque → challenge', async () => {
  const auth = authenticator({ algorithms: ['SHA-256'] });
  const ch = await challengeFor(auth);
  const alice = { username: 'alice', password: 'wonderland' };
  const reasonFor = async (auth2: string[], uri?: string) => {
    const r = await auth.authenticate(request({ auth: auth2, uri }));
    const f = failed(r);
    assert.equal(f.challenge.status, 401);
    assert.ok(!challenges(f.challenge).some((v) => 'stale' in v));
    return f.reason;
  };
  // digest computed over another URI than the Request-URI
  assert.equal(await reasonFor([answer(ch, { ...alice, uri: 'sip:other.example.com' })]), 'uri');
  assert.equal(await reasonFor([answer(ch, { ...alice, uri: 'sip:example.com' })], 'sip:carol@example.com'), 'uri');
  assert.equal(await reasonFor([answer(ch, { ...alice, uri: 'not a uri' })]), 'uri');
  // credentials for another realm are not ours to check
  assert.equal(await reasonFor([answer(ch, { ...alice, realm: 'example.org' })]), 'realm');
  assert.equal(await reasonFor([answer(ch, { ...alice, realm: 'EXAMPLE.COM' })]), 'realm');
  // MD5 not offered here; -sess and unknown names never
  assert.equal(await reasonFor([answer(ch, { ...alice, algorithm: 'MD5' })]), 'algorithm');
  assert.equal(await reasonFor([answer(ch, { ...alice, algorithm: 'SHA-256-sess', hashAs: 'SHA-256' })]), 'algorithm');
  assert.equal(await reasonFor([answer(ch, { ...alice, algorithm: 'SHA-1', hashAs: 'SHA-256' })]), 'algorithm');
  assert.equal(await reasonFor([answer(ch, alice).replace('qop=auth', 'qop=auth-int')]), 'qop');
  assert.equal(await reasonFor([answer(ch, { ...alice, opaque: 'forged' })]), 'opaque');
  // a right answer still passes after all that (and lower-case algorithm names are fine)
  assert.equal((await auth.authenticate(request({ auth: [answer(ch, { ...alice, algorithm: 'sha-256', hashAs: 'SHA-256', nc: 9 })] }))).ok, true);
  // opaque left out: tolerated (it carries no state)
  assert.equal((await auth.authenticate(request({ auth: [answer(ch, { ...alice, opaque: null, nc: 10 })] }))).ok, true);
});

test('response mismatch details: another method, altered cnonce or nc → credentials', async () => {
  const auth = authenticator();
  const ch = await challengeFor(auth);
  const good = answer(ch, { username: 'alice', password: 'wonderland', cnonce: 'abc', nc: 1 });
  assert.equal((await auth.authenticate(request({ auth: [good] }))).ok, true);
  assert.equal(failed(await auth.authenticate(request({ method: 'OPTIONS', auth: [good] }))).reason, 'credentials');
  assert.equal(failed(await auth.authenticate(request({ auth: [good.replace('cnonce="abc"', 'cnonce="abd"')] }))).reason, 'credentials');
  assert.equal(failed(await auth.authenticate(request({ auth: [good.replace('nc=00000001', 'nc=00000002')] }))).reason, 'credentials');
  // response hex case does not matter
  const upper = good.replace(/response="([0-9a-f]+)"/, (_, h: string) => `response="${h.toUpperCase()}"`);
  assert.equal((await auth.authenticate(request({ auth: [upper] }))).ok, true);
});

test('the credentials for our realm are picked among several, in one field or several', async () => {
  const auth = authenticator();
  const ch = await challengeFor(auth);
  const ours = answer(ch, { username: 'alice', password: 'wonderland' });
  const theirs = answer({ ...ch, realm: 'other.example' }, { username: 'x', password: 'y' });
  assert.equal((await auth.authenticate(request({ auth: [theirs, ours] }))).ok, true);
  assert.equal((await auth.authenticate(request({ auth: [`${theirs}, ${ours}`] }))).ok, true);
  // an unsupported-algorithm entry for our realm does not hide a supported one after it
  const sessForOurRealm = answer(ch, { username: 'alice', password: 'wonderland', algorithm: 'SHA-256-sess', hashAs: 'SHA-256' });
  assert.equal((await auth.authenticate(request({ auth: [sessForOurRealm, ours] }))).ok, true);
});

test('malformed Authorization → authenticate throws a 400 DigestParseError naming the fault', async () => {
  const auth = authenticator();
  const ch = await challengeFor(auth);
  const good = answer(ch, { username: 'alice', password: 'wonderland' });
  const cases: Array<[string, RegExp]> = [
    [good.replace(/"$/, ''), /Unterminated quoted string/],
    [good.replace(', response=', ', , response='), /Empty element/],
    [good.replace('username="alice", ', ''), /Missing "username"/],
    [good.replace(/, cnonce="[^"]*"/, ''), /Missing "cnonce"/],
    [good.replace('nc=00000001', 'nc=1'), /Bad "nc"/],
    [`${good}, realm="x"`, /Duplicate parameter "realm"/],
  ];
  for (const [value, fault] of cases) {
    await assert.rejects(auth.authenticate(request({ auth: [value] })), (err: unknown) => {
      assert.ok(err instanceof DigestParseError, String(err));
      assert.equal(err.status, 400);
      assert.match(err.message, fault);
      assert.match(err.message, /in Authorization/);
      return true;
    });
  }
  // other schemes are not an error, just not credentials
  assert.equal(failed(await auth.authenticate(request({ auth: ['Basic YWxpY2U6d29uZGVybGFuZA=='] }))).reason, 'realm');
});

test('a failing credential store propagates (it is not a 401)', async () => {
  const auth = authenticator({ credentials: async () => { throw new Error('store down'); } });
  const ch = await challengeFor(auth);
  await assert.rejects(auth.authenticate(request({ auth: [answer(ch, { username: 'alice', password: 'wonderland' })] })), /store down/);
});

// ---- proxy ----

test('proxy: true → 407 with Proxy-Authenticate, reads Proxy-Authorization only', async () => {
  const auth = authenticator({ proxy: true });
  const r = failed(await auth.authenticate(request({ method: 'INVITE', uri: 'sip:bob@example.com' })));
  assert.equal(r.challenge.status, 407);
  assert.equal(r.challenge.reason, 'Proxy Authentication Required');
  assert.equal(r.challenge.has('WWW-Authenticate'), false);
  const chs = challenges(r.challenge, 'Proxy-Authenticate');
  assert.deepEqual(chs.map((c) => c.algorithm), ['SHA-256', 'MD5']);
  assert.match(r.challenge.toString(), /\r\nProxy-Authenticate: Digest realm="example.com"/);
  const creds = answer(chs[0]!, { username: 'alice', password: 'wonderland', method: 'INVITE', uri: 'sip:bob@example.com' });
  // the same credentials in Authorization are not for a proxy
  assert.equal(failed(await auth.authenticate(request({ method: 'INVITE', uri: 'sip:bob@example.com', auth: [creds] }))).reason, 'missing');
  const ok = await auth.authenticate(request({ method: 'INVITE', uri: 'sip:bob@example.com', auth: [creds], header: 'Proxy-Authorization' }));
  assert.deepEqual(ok, { ok: true, username: 'alice', algorithm: 'SHA-256' });
  await assert.rejects(
    auth.authenticate(request({ auth: ['Digest realm="example.com"'], header: 'Proxy-Authorization' })),
    /Missing "username" in Proxy-Authorization/,
  );
});

// ---- optional replay limit (per node) ----

test('replayProtection: a reused nc is refused (stale=true), a new nc passes; another node does not know', async () => {
  const c = clock();
  const nodeA = authenticator({ now: c.now, replayProtection: true });
  const nodeB = authenticator({ now: c.now, replayProtection: true });
  const ch = await challengeFor(nodeA);
  const first = answer(ch, { username: 'alice', password: 'wonderland', nc: 1 });
  assert.equal((await nodeA.authenticate(request({ auth: [first] }))).ok, true);
  const replay = failed(await nodeA.authenticate(request({ auth: [first] })));
  assert.equal(replay.reason, 'replay');
  assert.ok(challenges(replay.challenge).every((v) => v.stale === 'true'));
  assert.equal((await nodeA.authenticate(request({ auth: [answer(ch, { username: 'alice', password: 'wonderland', nc: 2 })] }))).ok, true);
  // NOT cluster-wide: node B has not seen nc=1 (documented limitation)
  assert.equal((await nodeB.authenticate(request({ auth: [first] }))).ok, true);
  // without the option, reuse is accepted
  const plain = authenticator({ now: c.now });
  assert.equal((await plain.authenticate(request({ auth: [first] }))).ok, true);
  assert.equal((await plain.authenticate(request({ auth: [first] }))).ok, true);
});

// ---- configuration ----

test('configuration errors name their key', () => {
  const key = (k: string) => (err: unknown) => err instanceof AuthConfigError && err.key === k;
  assert.throws(() => authenticator({ secret: 'short' }), key('auth.secret'));
  assert.throws(() => authenticator({ secret: Buffer.alloc(8) }), key('auth.secret'));
  assert.throws(() => authenticator({ realm: '' }), key('auth.realm'));
  assert.throws(() => authenticator({ realm: 'a\r\nb' }), key('auth.realm'));
  assert.throws(() => authenticator({ algorithms: [] }), key('auth.algorithms'));
  assert.throws(() => authenticator({ algorithms: ['MD5', 'MD5'] }), key('auth.algorithms'));
  assert.throws(() => authenticator({ algorithms: ['SHA-1' as 'MD5'] }), key('auth.algorithms'));
  assert.throws(() => authenticator({ nonceTtlMs: -5 }), key('auth.nonceTtlMs'));
  assert.throws(() => authenticator({ credentials: undefined as unknown as CredentialLookup }), key('auth.credentials'));
});
