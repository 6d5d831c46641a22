import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SipError } from '../../../src/sip/errors.ts';
import { DigestParseError } from '../../../src/server/auth/errors.ts';
import {
  digestCredentials,
  findDigestCredentials,
  formatDigestChallenge,
  parseAuthHeader,
  quoteString,
} from '../../../src/server/auth/header.ts';

/** Asserts that fn throws a 400 DigestParseError whose message matches `fault`. */
function rejects400(fn: () => unknown, fault: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof DigestParseError, `expected DigestParseError, got ${String(err)}`);
    assert.ok(err instanceof SipError);
    assert.equal(err.status, 400);
    assert.equal(err.code, 'SIP_PARSE');
    assert.match(err.message, fault);
    return true;
  });
}

const RFC2617_AUTHORIZATION =
  'Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", ' +
  'uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", ' +
  'response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41"';

test('parses the RFC 2617 §3.5 Authorization', () => {
  const [entry, ...rest] = parseAuthHeader(RFC2617_AUTHORIZATION);
  assert.equal(rest.length, 0);
  assert.equal(entry!.scheme, 'Digest');
  assert.equal(entry!.token68, null);
  const c = digestCredentials(entry!);
  assert.equal(c.username, 'Mufasa');
  assert.equal(c.realm, 'testrealm@host.com');
  assert.equal(c.nonce, 'dcd98b7102dd2f0e8b11d0f600bfb0c093');
  assert.equal(c.uri, '/dir/index.html');
  assert.equal(c.qop, 'auth');
  assert.equal(c.nc, '00000001');
  assert.equal(c.cnonce, '0a4f113b');
  assert.equal(c.response, '6629fae49393a05397450978507c4ef1');
  assert.equal(c.opaque, '5ccc069c403ebaf9f0171e9517f40e41');
  assert.equal(c.algorithm, null);
});

test('quoted strings: escaped quotes and backslashes, commas and "=" inside quotes', () => {
  const [e] = parseAuthHeader('Digest username="Mu\\"fa\\\\sa", realm="a, b=c", nonce="\\n", uri="sip:x", response="0"');
  assert.equal(e!.params.get('username'), 'Mu"fa\\sa');
  assert.equal(e!.params.get('realm'), 'a, b=c');
  assert.equal(e!.params.get('nonce'), 'n', 'a quoted-pair stands for the character itself');
  assert.equal(e!.params.size, 5);
  const [empty] = parseAuthHeader('Digest opaque=""');
  assert.equal(empty!.params.get('opaque'), '');
});

test('odd spacing: tabs, spaces around "=" and ",", leading and trailing whitespace', () => {
  const [e] = parseAuthHeader(' \tDigest   username = "bob" ,realm=\t"r" ,  nonce ="n",uri= "sip:r" , response="ab" \t');
  assert.deepEqual([...e!.params], [['username', 'bob'], ['realm', 'r'], ['nonce', 'n'], ['uri', 'sip:r'], ['response', 'ab']]);
});

test('parameter names and the scheme are case-insensitive; values keep their case', () => {
  const [e] = parseAuthHeader('dIgEsT UserName="Bob", REALM="R", Nonce=N, URI="sip:R", Response="AB", Algorithm=sha-256, QOP=auth, NC=0000000a, CNonce="x"');
  const c = digestCredentials(e!);
  assert.equal(c.username, 'Bob');
  assert.equal(c.realm, 'R');
  assert.equal(c.nonce, 'N');
  assert.equal(c.algorithm, 'sha-256');
  assert.equal(c.nc, '0000000a');
  assert.equal(c.cnonce, 'x');
});

test('unquoted values are taken as written (clients send tokens and unquoted URIs)', () => {
  const [e] = parseAuthHeader('Digest username=bob, realm=r, nonce=n, uri=sip:bob@r;transport=udp, response=ab, qop="auth", nc=00000001, cnonce=c');
  const c = digestCredentials(e!);
  assert.equal(c.uri, 'sip:bob@r;transport=udp');
  assert.equal(c.qop, 'auth');
});

test('several entries in one header field, and a token68 entry', () => {
  const entries = parseAuthHeader('Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==, Digest realm="a", nonce="1", Digest realm="b" , nonce="2", Other');
  assert.deepEqual(entries.map((e) => [e.scheme, e.token68, [...e.params]]), [
    ['Basic', 'QWxhZGRpbjpvcGVuIHNlc2FtZQ==', []],
    ['Digest', null, [['realm', 'a'], ['nonce', '1']]],
    ['Digest', null, [['realm', 'b'], ['nonce', '2']]],
    ['Other', null, []],
  ]);
});

test('findDigestCredentials picks the realm, across entries and header fields, skipping other schemes', () => {
  const mine = 'Digest username="u2", realm="mine", nonce="n2", uri="sip:x", response="r2"';
  const theirs = 'Digest username="u1", realm="theirs", nonce="n1", uri="sip:x", response="r1"';
  const found = findDigestCredentials(['Basic Zm9vOmJhcg==', `${theirs}, ${mine}`], 'mine');
  assert.equal(found.length, 1);
  assert.equal(found[0]!.username, 'u2');
  const two = findDigestCredentials([theirs, mine, mine.replace('u2', 'u3')], 'mine');
  assert.deepEqual(two.map((c) => c.username), ['u2', 'u3']);
  assert.deepEqual(findDigestCredentials([theirs], 'mine'), []);
  // Realms compare exactly (RFC 2617: case-sensitive).
  assert.deepEqual(findDigestCredentials([mine], 'MINE'), []);
  // Another realm's entry is not checked for completeness (it is not ours to consume)...
  assert.deepEqual(findDigestCredentials(['Digest realm="theirs"'], 'mine'), []);
  // ...but a Digest entry without a realm cannot be told apart from ours.
  rejects400(() => findDigestCredentials(['Digest username="u", nonce="n"'], 'mine'), /Missing "realm" in Authorization/);
  rejects400(() => findDigestCredentials(['Digest realm="mine", nonce="n"'], 'mine', 'Proxy-Authorization'), /Missing "username" in Proxy-Authorization/);
});

test('malformed headers: a 400 naming the fault', () => {
  rejects400(() => parseAuthHeader(''), /Empty Authorization header/);
  rejects400(() => parseAuthHeader('  \t'), /Empty Authorization header/);
  rejects400(() => parseAuthHeader('Digest username="bob'), /Unterminated quoted string in the value of "username"/);
  rejects400(() => parseAuthHeader('Digest username="bob\\'), /Unterminated quoted string/);
  rejects400(() => parseAuthHeader('Digest username="bob" realm="r"'), /Unexpected "realm=.*" after the value of "username"/);
  rejects400(() => parseAuthHeader('Digest username "bob"'), /Expected "=" after "username"/);
  rejects400(() => parseAuthHeader('Digest username=, realm="r"'), /Missing value for "username"/);
  rejects400(() => parseAuthHeader('Digest realm="r",, nonce="n"'), /Empty element/);
  rejects400(() => parseAuthHeader('Digest realm="r",'), /Empty element/);
  rejects400(() => parseAuthHeader('Digest realm="r", Realm="s"'), /Duplicate parameter "realm"/);
  rejects400(() => parseAuthHeader('username="bob"'), /Missing auth scheme before "username"/);
  rejects400(() => parseAuthHeader('"Digest" realm="r"'), /Expected an auth scheme/);
  rejects400(() => parseAuthHeader('Digest realm="r", ="x"'), /Expected a parameter name/);
  rejects400(() => parseAuthHeader('Digest realm="a\u0000b"'), /Control character in the value of "realm"/);
  rejects400(() => parseAuthHeader('Digest realm=a\u0007b'), /Control character in the value of "realm"/);
  rejects400(() => parseAuthHeader('Basic Zm9v, x=1'), /Parameter after a token68 value/);
  rejects400(() => parseAuthHeader('Digest@ realm="r"'), /Expected whitespace after the auth scheme/);
  rejects400(() => parseAuthHeader('Digest realm="r', 'Proxy-Authorization'), /in Proxy-Authorization$/);
});

test('Digest credentials: required parameters, qop needs cnonce and an 8-hex-digit nc', () => {
  const base = 'Digest username="u", realm="r", nonce="n", uri="sip:r", response="00"';
  assert.equal(digestCredentials(parseAuthHeader(base)[0]!).qop, null);
  for (const name of ['username', 'realm', 'nonce', 'uri', 'response']) {
    const without = base.replace(new RegExp(`${name}="[^"]*"(, )?`), '').replace(/, $/, '');
    rejects400(() => digestCredentials(parseAuthHeader(without)[0]!), new RegExp(`Missing "${name}"`));
  }
  rejects400(() => digestCredentials(parseAuthHeader(base + ', qop=auth, nc=00000001')[0]!), /Missing "cnonce" \(required with qop\)/);
  rejects400(() => digestCredentials(parseAuthHeader(base + ', qop=auth, cnonce="c"')[0]!), /Missing "nc" \(required with qop\)/);
  rejects400(() => digestCredentials(parseAuthHeader(base + ', qop=auth, cnonce="c", nc=1')[0]!), /Bad "nc" \(8 hex digits expected\): "1"/);
  rejects400(() => digestCredentials(parseAuthHeader(base + ', qop=auth, cnonce="c", nc=0000000g')[0]!), /Bad "nc"/);
  rejects400(() => digestCredentials(parseAuthHeader('Basic Zm9v')[0]!), /Not a Digest scheme: Basic/);
  // Digest has no token68 form, so this fails in the parser already
  rejects400(() => parseAuthHeader('Digest Zm9v'), /Expected "=" after "Zm9v"/);
  rejects400(() => digestCredentials({ scheme: 'Digest', params: new Map(), token68: 'Zm9v' }), /Digest credentials without parameters/);
});

test('formatDigestChallenge writes the RFC 3261 form, stale only when true', () => {
  assert.equal(
    formatDigestChallenge({ realm: 'example.com', nonce: 'abc', opaque: 'xyz', algorithm: 'SHA-256', qop: ['auth'] }),
    'Digest realm="example.com", nonce="abc", opaque="xyz", algorithm=SHA-256, qop="auth"',
  );
  assert.equal(
    formatDigestChallenge({ realm: 'r', nonce: 'n', algorithm: 'MD5', qop: ['auth', 'auth-int'], stale: true }),
    'Digest realm="r", nonce="n", algorithm=MD5, qop="auth,auth-int", stale=true',
  );
  assert.equal(formatDigestChallenge({ realm: 'r', nonce: 'n', stale: false }), 'Digest realm="r", nonce="n"');
  assert.equal(formatDigestChallenge({ realm: 'r', nonce: 'n', domain: 'sip:a sip:b' }), 'Digest realm="r", domain="sip:a sip:b", nonce="n"');
});

test('formatting escapes quotes and backslashes, and refuses what a header cannot carry', () => {
  assert.equal(quoteString('a"b\\c'), '"a\\"b\\\\c"');
  const text = formatDigestChallenge({ realm: 'say "hi" \\o/', nonce: 'n' });
  assert.equal(text, 'Digest realm="say \\"hi\\" \\\\o/", nonce="n"');
  // and the parser reads back what was written
  assert.equal(parseAuthHeader(text, 'WWW-Authenticate')[0]!.params.get('realm'), 'say "hi" \\o/');
  assert.throws(() => formatDigestChallenge({ realm: 'a\r\nVia: evil', nonce: 'n' }), RangeError);
  assert.throws(() => quoteString('\u20ac'), RangeError);
  assert.throws(() => formatDigestChallenge({ realm: 'r', nonce: 'n', algorithm: 'SHA 256' }), RangeError);
  assert.throws(() => formatDigestChallenge({ realm: 'r', nonce: 'n', qop: ['auth,x'] }), RangeError);
});

test('challenges parse back: several challenges in one WWW-Authenticate value', () => {
  const a = formatDigestChallenge({ realm: 'r', nonce: 'n1', opaque: 'o', algorithm: 'SHA-256', qop: ['auth'], stale: true });
  const b = formatDigestChallenge({ realm: 'r', nonce: 'n1', opaque: 'o', algorithm: 'MD5', qop: ['auth'] });
  const entries = parseAuthHeader(`${a}, ${b}`, 'WWW-Authenticate');
  assert.equal(entries.length, 2);
  assert.deepEqual(Object.fromEntries(entries[0]!.params), { realm: 'r', nonce: 'n1', opaque: 'o', algorithm: 'SHA-256', qop: 'auth', stale: 'true' });
  assert.equal(entries[1]!.params.get('algorithm'), 'MD5');
  assert.equal(entries[1]!.params.has('stale'), false);
});
