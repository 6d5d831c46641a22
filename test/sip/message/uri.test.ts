import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SipParseError } from '../../../src/sip/errors.ts';
import {
  cloneUri,
  formatUri,
  isSipUri,
  isTelUri,
  parseUri,
  uriEquals,
  type SipUri,
  type TelUri,
  type Uri,
} from '../../../src/sip/message/uri.ts';

function sip(text: string): SipUri {
  const u = parseUri(text);
  assert.ok(isSipUri(u), `${text} should be a SIP URI`);
  return u;
}

function assertBadUri(text: string): void {
  assert.throws(
    () => parseUri(text),
    (e: unknown) => e instanceof SipParseError && e.status === 400 && e.code === 'SIP_BAD_URI',
    `expected SipParseError 400 SIP_BAD_URI for ${JSON.stringify(text)}`,
  );
}

test('sip URI with every component', () => {
  const u = sip('sip:alice:secretword@atlanta.com:5061;transport=tcp;lr?subject=project%20x&priority=urgent');
  assert.equal(u.scheme, 'sip');
  assert.equal(u.user, 'alice');
  assert.equal(u.password, 'secretword');
  assert.equal(u.host, 'atlanta.com');
  assert.equal(u.port, 5061);
  assert.deepEqual([...u.params], [
    ['transport', 'tcp'],
    ['lr', null],
  ]);
  assert.deepEqual(u.headers, [
    ['subject', 'project%20x'],
    ['priority', 'urgent'],
  ]);
});

test('minimal sip and sips URIs', () => {
  const a = sip('sip:atlanta.com');
  assert.equal(a.user, null);
  assert.equal(a.password, null);
  assert.equal(a.port, null);
  assert.equal(a.params.size, 0);
  assert.equal(a.headers.length, 0);
  const b = sip('sips:bob@biloxi.com');
  assert.equal(b.scheme, 'sips');
  assert.equal(b.user, 'bob');
});

test('scheme and host are case-insensitive (normalised), user is kept as written', () => {
  const u = sip('SIP:ALICE@AtLanTa.CoM;Transport=UDP');
  assert.equal(u.scheme, 'sip');
  assert.equal(u.user, 'ALICE');
  assert.equal(u.host, 'atlanta.com');
  // parameter names are lower-cased, values kept
  assert.equal(u.params.get('transport'), 'UDP');
});

test('empty password and IPv4 host', () => {
  const u = sip('sip:alice:@192.0.2.4:5060');
  assert.equal(u.password, '');
  assert.equal(u.host, '192.0.2.4');
  assert.equal(u.port, 5060);
});

test('parameters: flags, empty value, several, with escapes', () => {
  const u = sip('sip:proxy.example.com;lr;maddr=239.255.255.1;ttl=15;foo=;x%41y=b%20c');
  assert.equal(u.params.get('lr'), null);
  assert.equal(u.params.get('maddr'), '239.255.255.1');
  assert.equal(u.params.get('ttl'), '15');
  assert.equal(u.params.get('foo'), '');
  assert.equal(u.params.get('x%41y'), 'b%20c');
  assert.equal(u.params.has('bar'), false);
});

test('user part may hold ";" "?" "/" and escapes (RFC 4475 §3.1.1.9 semiuri)', () => {
  const u = sip('sip:user;par=u%40example.net@example.com');
  assert.equal(u.user, 'user;par=u%40example.net');
  assert.equal(u.host, 'example.com');
  assert.equal(u.params.size, 0);
  const v = sip('sip:a?b/c@example.com;lr');
  assert.equal(v.user, 'a?b/c');
  assert.equal(v.params.get('lr'), null);
  assert.equal(v.headers.length, 0);
});

test('escaped characters, including NUL, are kept escaped in the user part', () => {
  assert.equal(sip('sip:%61lice@atlanta.com').user, '%61lice');
  assert.equal(sip('sip:null-%00-null@example.com').user, 'null-%00-null');
  assert.equal(sip('sip:sips%3Auser%40example.com@example.net').user, 'sips%3Auser%40example.com');
});

test('IPv6 references keep their brackets, with or without port and params', () => {
  const a = sip('sip:[2001:db8::10]');
  assert.equal(a.host, '[2001:db8::10]');
  assert.equal(a.port, null);
  const b = sip('sip:alice@[2001:DB8::10]:5070;maddr=[2001:db8::20];transport=udp');
  assert.equal(b.host, '[2001:db8::10]');
  assert.equal(b.port, 5070);
  assert.equal(b.params.get('maddr'), '[2001:db8::20]');
  assert.equal(b.params.get('transport'), 'udp');
  const c = sip('sip:[::ffff:192.0.2.1]:5060');
  assert.equal(c.host, '[::ffff:192.0.2.1]');
  assert.equal(c.port, 5060);
});

test('tel URIs', () => {
  const t = parseUri('tel:+1-201-555-0123;phone-context=example.com;ext=22');
  assert.ok(isTelUri(t));
  assert.equal((t as TelUri).number, '+1-201-555-0123');
  assert.equal((t as TelUri).params.get('phone-context'), 'example.com');
  assert.equal((t as TelUri).params.get('ext'), '22');
  const local = parseUri('TEL:7042;phone-context=example.com') as TelUri;
  assert.equal(local.scheme, 'tel');
  assert.equal(local.number, '7042');
  assertBadUri('tel:call-me-maybe!');
  assertBadUri('tel:');
});

test('other schemes are kept whole', () => {
  const u = parseUri('urn:service:sos');
  assert.equal(u.scheme, 'urn');
  assert.equal(isSipUri(u), false);
  assert.equal(isTelUri(u), false);
  assert.equal(formatUri(u), 'urn:service:sos');
  assert.equal(parseUri('Mailto:bob@example.com').scheme, 'mailto');
  assert.equal(formatUri(parseUri('http://www.example.com/a?b=c')), 'http://www.example.com/a?b=c');
});

test('malformed URIs are SipParseError 400 SIP_BAD_URI', () => {
  for (const bad of [
    '',
    'sip',
    ':foo',
    'sip:',
    'sip:@example.com',
    'sip:alice@',
    'sip:alice@exa mple.com',
    'sip:alice@example.com ',
    'sip:<alice@example.com>',
    'sip:alice@example.com:',
    'sip:alice@example.com:abc',
    'sip:alice@example.com:65536',
    'sip:alice@example.com:123456',
    'sip:alice@example.com:5060x',
    'sip:alice@example.com;',
    'sip:alice@example.com;a=b;',
    'sip:alice@example.com;=b',
    'sip:alice@example.com;a=b c',
    'sip:alice@example.com;a="b"',
    'sip:alice@example.com?',
    'sip:alice@example.com?noequals',
    'sip:alice@example.com?=v',
    'sip:al ice@example.com',
    'sip:a%zzb@example.com',
    'sip:a%4@example.com',
    'sip:alice@[2001:db8::1',
    'sip:alice@[2001:db8::1]x',
    'sip:alice@-example.com',
    'sip:alice@exa_mple.com',
    '1sip:alice@example.com',
    's p:alice@example.com',
  ]) {
    assertBadUri(bad);
  }
});

test('formatUri writes the canonical form and round-trips', () => {
  for (const text of [
    'sip:atlanta.com',
    'sips:alice@atlanta.com',
    'sip:alice:pw@atlanta.com:5061;transport=tcp;lr?subject=project%20x&priority=urgent',
    'sip:[2001:db8::10]:5070;maddr=[2001:db8::20]',
    'sip:user;par=u%40example.net@example.com',
    'tel:+1-201-555-0123;phone-context=example.com',
  ]) {
    assert.equal(formatUri(parseUri(text)), text);
  }
  assert.equal(formatUri(parseUri('SIP:Alice@ATLANTA.com;LR')), 'sip:Alice@atlanta.com;lr');
  const built: SipUri = { scheme: 'sip', user: 'bob', password: null, host: 'biloxi.com', port: 5080, params: new Map([['lr', null], ['transport', 'tcp']]), headers: [] };
  assert.equal(formatUri(built), 'sip:bob@biloxi.com:5080;lr;transport=tcp');
});

test('cloneUri gives an independent copy', () => {
  const a = sip('sip:alice@atlanta.com;lr?x=y');
  const b = cloneUri(a);
  b.params.set('transport', 'tcp');
  b.headers.push(['z', '1']);
  b.host = 'biloxi.com';
  assert.equal(a.params.has('transport'), false);
  assert.equal(a.headers.length, 1);
  assert.equal(a.host, 'atlanta.com');
  assert.equal(formatUri(b), 'sip:alice@biloxi.com;lr;transport=tcp?x=y&z=1');
  const t = parseUri('tel:+123;a=b') as TelUri;
  const t2 = cloneUri(t);
  t2.params.delete('a');
  assert.equal(t.params.get('a'), 'b');
});

const eq = (a: string, b: string): boolean => uriEquals(parseUri(a), parseUri(b));

test('uriEquals: the equivalent pairs of RFC 3261 §19.1.4', () => {
  assert.equal(eq('sip:%61lice@atlanta.com;transport=TCP', 'sip:alice@AtLanTa.CoM;Transport=tcp'), true);
  assert.equal(eq('sip:carol@chicago.com', 'sip:carol@chicago.com;newparam=5'), true);
  assert.equal(eq('sip:carol@chicago.com', 'sip:carol@chicago.com;security=on'), true);
  assert.equal(eq('sip:carol@chicago.com;newparam=5', 'sip:carol@chicago.com;security=on'), true);
  assert.equal(
    eq('sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com', 'sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com'),
    true,
  );
  assert.equal(eq('sip:alice@atlanta.com?subject=project%20x&priority=urgent', 'sip:alice@atlanta.com?priority=urgent&subject=project%20x'), true);
});

test('uriEquals: the non-equivalent pairs of RFC 3261 §19.1.4', () => {
  assert.equal(eq('SIP:ALICE@AtLanTa.CoM;Transport=udp', 'sip:alice@AtLanTa.CoM;Transport=UDP'), false);
  assert.equal(eq('sip:bob@biloxi.com', 'sip:bob@biloxi.com:5060'), false);
  assert.equal(eq('sip:bob@biloxi.com', 'sip:bob@biloxi.com;transport=udp'), false);
  assert.equal(eq('sip:bob@biloxi.com', 'sip:bob@biloxi.com:6000;transport=tcp'), false);
  assert.equal(eq('sip:carol@chicago.com', 'sip:carol@chicago.com?Subject=next%20meeting'), false);
  assert.equal(eq('sip:bob@phone21.boxesbybob.com', 'sip:bob@192.0.2.4'), false);
});

test('uriEquals: further rules of §19.1.4', () => {
  // scheme
  assert.equal(eq('sip:alice@atlanta.com', 'sips:alice@atlanta.com'), false);
  // a URI without user never matches one with a user
  assert.equal(eq('sip:atlanta.com', 'sip:alice@atlanta.com'), false);
  // password
  assert.equal(eq('sip:alice:a@atlanta.com', 'sip:alice:b@atlanta.com'), false);
  assert.equal(eq('sip:alice:@atlanta.com', 'sip:alice@atlanta.com'), false);
  assert.equal(eq('sip:alice:p%77@atlanta.com', 'sip:alice:pw@atlanta.com'), true);
  // user, ttl, method, maddr in one URI only never match
  for (const p of ['user=phone', 'ttl=1', 'method=INVITE', 'maddr=239.255.255.1']) {
    assert.equal(eq('sip:alice@atlanta.com', `sip:alice@atlanta.com;${p}`), false, p);
    assert.equal(eq(`sip:alice@atlanta.com;${p}`, 'sip:alice@atlanta.com'), false, p);
    assert.equal(eq(`sip:alice@atlanta.com;${p}`, `sip:alice@atlanta.com;${p}`), true, p);
  }
  // a parameter in both must match (case-insensitively)
  assert.equal(eq('sip:alice@atlanta.com;foo=bar', 'sip:alice@atlanta.com;foo=baz'), false);
  assert.equal(eq('sip:alice@atlanta.com;foo=bar', 'sip:alice@atlanta.com;FOO=BAR'), true);
  // parameter order does not matter
  assert.equal(eq('sip:alice@atlanta.com;a=1;b=2', 'sip:alice@atlanta.com;b=2;a=1'), true);
  // header values compare, whatever their order; a header present in one only never matches
  assert.equal(eq('sip:alice@atlanta.com?a=1', 'sip:alice@atlanta.com?a=2'), false);
  assert.equal(eq('sip:alice@atlanta.com?a=1&b=2', 'sip:alice@atlanta.com?a=1'), false);
  assert.equal(eq('sip:alice@atlanta.com?subject=x%20y', 'sip:alice@atlanta.com?Subject=x%20y'), true);
  // escapes of reserved characters are not equivalent to the characters
  assert.equal(eq('sip:a;b@atlanta.com', 'sip:a%3Bb@atlanta.com'), false);
  assert.equal(eq('sip:a%3bb@atlanta.com', 'sip:a%3Bb@atlanta.com'), true);
  assert.equal(eq('sip:a%253B@atlanta.com', 'sip:a%3B@atlanta.com'), false);
  // IPv6 host case
  assert.equal(eq('sip:[2001:DB8::1]', 'sip:[2001:db8::1]'), true);
  // tel and other schemes
  assert.equal(eq('tel:+1234', 'tel:+1234'), true);
  assert.equal(eq('tel:+1234', 'tel:+1235'), false);
  assert.equal(eq('urn:service:sos', 'URN:Service:SOS'), true);
  assert.equal(eq('tel:+1234', 'sip:+1234@example.com'), false);
});

test('uriEquals is symmetric on a sample of URIs', () => {
  const sample = [
    'sip:alice@atlanta.com',
    'sip:alice@atlanta.com;transport=tcp',
    'sip:alice@atlanta.com;maddr=1.2.3.4',
    'sip:alice@atlanta.com:5060',
    'sip:alice@atlanta.com;foo=1',
    'sip:alice@atlanta.com?x=1',
    'sips:alice@atlanta.com',
    'sip:atlanta.com',
  ];
  let equalPairs = 0;
  for (const a of sample) {
    for (const b of sample) {
      const ua: Uri = parseUri(a);
      const ub: Uri = parseUri(b);
      assert.equal(uriEquals(ua, ub), uriEquals(ub, ua), `${a} vs ${b}`);
      if (uriEquals(ua, ub)) equalPairs++;
    }
  }
  // each equals itself, plus alice@atlanta.com ~ ;foo=1 in both directions
  assert.equal(equalPairs, sample.length + 2);
});
