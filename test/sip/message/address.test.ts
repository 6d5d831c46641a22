import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SipParseError } from '../../../src/sip/errors.ts';
import { formatAddress, isToken, parseAddress, splitList, type Address } from '../../../src/sip/message/address.ts';
import { formatUri, isSipUri, parseUri, type SipUri } from '../../../src/sip/message/uri.ts';

function sipUri(a: Address): SipUri {
  assert.ok(isSipUri(a.uri), 'expected a SIP URI');
  return a.uri;
}

function assertParseError(fn: () => unknown, what: string): void {
  assert.throws(fn, (e: unknown) => e instanceof SipParseError && e.status === 400, what);
}

test('name-addr with a quoted display name and a tag', () => {
  const a = parseAddress('"Alice Liddell" <sip:alice@atlanta.com>;tag=1928301774');
  assert.equal(a.displayName, 'Alice Liddell');
  assert.equal(a.angle, true);
  assert.equal(formatUri(a.uri), 'sip:alice@atlanta.com');
  assert.equal(a.params.get('tag'), '1928301774');
  assert.equal(a.params.size, 1);
});

test('name-addr without display name, with URI parameters kept inside <>', () => {
  const a = parseAddress('<sip:bob@biloxi.com;transport=tcp;lr>;expires=60');
  assert.equal(a.displayName, null);
  assert.equal(a.angle, true);
  const u = sipUri(a);
  assert.equal(u.params.get('transport'), 'tcp');
  assert.equal(u.params.get('lr'), null);
  assert.equal(a.params.get('expires'), '60');
  assert.equal(a.params.has('transport'), false);
});

test('unquoted display name: one or several tokens', () => {
  assert.equal(parseAddress('Bob <sip:bob@biloxi.com>').displayName, 'Bob');
  assert.equal(parseAddress('Bob  J. Smith\t<sip:bob@biloxi.com>').displayName, 'Bob  J. Smith');
  assert.equal(parseAddress('  Bob <sip:bob@biloxi.com>').displayName, 'Bob');
});

test('no LWS between display name and < (RFC 4475 §3.1.1.6)', () => {
  const a = parseAddress('"caller"<sip:caller@example.com>;tag=323');
  assert.equal(a.displayName, 'caller');
  assert.equal(a.params.get('tag'), '323');
  assert.equal(parseAddress('caller<sip:caller@example.com>').displayName, 'caller');
});

test('addr-spec: everything after ";" is a header parameter', () => {
  const a = parseAddress('sip:bob@biloxi.com;tag=a6c85cf;transport=tcp');
  assert.equal(a.angle, false);
  assert.equal(a.displayName, null);
  const u = sipUri(a);
  assert.equal(u.params.size, 0);
  assert.equal(u.host, 'biloxi.com');
  assert.equal(a.params.get('tag'), 'a6c85cf');
  assert.equal(a.params.get('transport'), 'tcp');
});

test('addr-spec with other schemes', () => {
  const t = parseAddress('tel:+12015550123;tag=x');
  assert.equal(t.uri.scheme, 'tel');
  assert.equal(t.params.get('tag'), 'x');
  const u = parseAddress('<urn:service:sos>');
  assert.equal(u.uri.scheme, 'urn');
  assert.equal(formatUri(u.uri), 'urn:service:sos');
});

test('quoted display names: escapes, and characters special outside quotes', () => {
  assert.equal(parseAddress('"Alice \\"the\\" \\\\ Liddell" <sip:a@b.com>').displayName, 'Alice "the" \\ Liddell');
  assert.equal(parseAddress('"Doe, John; <boss>" <sip:a@b.com>;tag=1').displayName, 'Doe, John; <boss>');
  assert.equal(parseAddress('"" <sip:a@b.com>').displayName, '');
  assert.equal(parseAddress('"\\q" <sip:a@b.com>').displayName, 'q');
  // UTF-8 bytes as received (latin1-decoded) are kept as they are
  assert.equal(parseAddress('"Jos\xc3\xa9" <sip:a@b.com>').displayName, 'Jos\xc3\xa9');
});

test('header parameters: flags, quoted values, IPv6 values, LWS, case', () => {
  const a = parseAddress(
    '<sip:alice@192.0.2.4> ; Expires = 3600 ;q=0.7;+sip.instance="<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>";reg-id=1;x;received=[2001:db8::9]',
  );
  assert.equal(a.params.get('expires'), '3600');
  assert.equal(a.params.get('q'), '0.7');
  assert.equal(a.params.get('+sip.instance'), '"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>"');
  assert.equal(a.params.get('reg-id'), '1');
  assert.equal(a.params.get('x'), null);
  assert.equal(a.params.get('received'), '[2001:db8::9]');
  assert.deepEqual([...a.params.keys()], ['expires', 'q', '+sip.instance', 'reg-id', 'x', 'received']);
  // a quoted value may hold ';' and ','
  assert.equal(parseAddress('<sip:a@b.com>;p="x;y,z"').params.get('p'), '"x;y,z"');
});

test('malformed addresses are SipParseError 400', () => {
  for (const bad of [
    '"Alice <sip:alice@atlanta.com>',
    '"Alice" sip:alice@atlanta.com',
    '<sip:alice@atlanta.com',
    'Bell, Alexander <sip:a.g.bell@bell-tel.com>',
    'Bob "the" <sip:bob@b.com>',
    'sip:alice@atlanta.com?subject=x',
    '<sip:alice@atlanta.com>;',
    '<sip:alice@atlanta.com>;=x',
    '<sip:alice@atlanta.com>;tag=',
    '<sip:alice@atlanta.com>;tag="open',
    '<sip:alice@atlanta.com>;tag=a b',
    '<sip:alice@atlanta.com> junk',
    '<sip:alice@atlanta.com>;ta g=1',
    '<sip:alice@atlanta.com>;tag=<x>',
    '< sip:alice@atlanta.com >',
    '<>',
    '',
    'sip:t.watson@example.org junk',
    '<sip:alice@ atlanta.com>',
  ]) {
    assertParseError(() => parseAddress(bad, 'To'), bad);
  }
});

test('a URI with headers is fine inside <>', () => {
  const a = parseAddress('<sip:user@example.com?Route=%3Csip:sip.example.com%3E>');
  assert.deepEqual(sipUri(a).headers, [['Route', '%3Csip:sip.example.com%3E']]);
});

test('the error names the header', () => {
  assert.throws(() => parseAddress('"unterminated <sip:a@b>', 'Contact'), /Contact/);
});

test('formatAddress: quoting, angle brackets, params; parse(format(a)) is a', () => {
  const cases: Array<[string, string]> = [
    ['"Alice Liddell" <sip:alice@atlanta.com>;tag=1928301774', 'Alice Liddell <sip:alice@atlanta.com>;tag=1928301774'],
    ['sip:bob@biloxi.com;tag=x', '<sip:bob@biloxi.com>;tag=x'],
    ['"Doe, John" <sip:a@b.com>', '"Doe, John" <sip:a@b.com>'],
    ['"say \\"hi\\"" <sip:a@b.com>', '"say \\"hi\\"" <sip:a@b.com>'],
    ['"back\\\\slash" <sip:a@b.com>', '"back\\\\slash" <sip:a@b.com>'],
    ['<sip:a@b.com;lr>;expires=5;x', '<sip:a@b.com;lr>;expires=5;x'],
    ['"" <sip:a@b.com>', '<sip:a@b.com>'],
  ];
  for (const [input, expected] of cases) {
    const a = parseAddress(input);
    const text = formatAddress(a);
    assert.equal(text, expected, input);
    const b = parseAddress(text);
    assert.equal(b.displayName ?? '', a.displayName ?? '', input);
    assert.equal(formatUri(b.uri), formatUri(a.uri), input);
    assert.deepEqual([...b.params], [...a.params], input);
  }
  // a display name that would not survive unquoted gets quoted
  const built: Address = { displayName: ' lead', uri: parseUri('sip:a@b.com'), params: new Map([['tag', 'z']]), angle: false };
  assert.equal(formatAddress(built), '" lead" <sip:a@b.com>;tag=z');
  assert.equal(parseAddress(formatAddress(built)).displayName, ' lead');
});

test('splitList: quotes, angle brackets, trimming', () => {
  assert.deepEqual(splitList('<sip:a@b.com>, "Doe, John" <sip:c@d.com>;q=0.5 ,sip:e@f.com', 'Contact'), [
    '<sip:a@b.com>',
    '"Doe, John" <sip:c@d.com>;q=0.5',
    'sip:e@f.com',
  ]);
  // a ',' inside <> (legal in a user part) does not split
  assert.deepEqual(splitList('<sip:a,b@c.com>, <sip:d@e.com>', 'Route'), ['<sip:a,b@c.com>', '<sip:d@e.com>']);
  // an escaped quote inside a quoted string
  assert.deepEqual(splitList('"a\\", b" <sip:a@b.com>, <sip:c@d.com>', 'Contact'), ['"a\\", b" <sip:a@b.com>', '<sip:c@d.com>']);
  // quoted parameter values holding commas
  assert.deepEqual(splitList('SIP/2.0/UDP a;x="1,2", SIP/2.0/UDP b', 'Via'), ['SIP/2.0/UDP a;x="1,2"', 'SIP/2.0/UDP b']);
  // no comma: the value itself
  assert.deepEqual(splitList('<sip:a@b.com>', 'Route'), ['<sip:a@b.com>']);
  assert.deepEqual(splitList('INVITE,ACK ,  BYE', 'Allow'), ['INVITE', 'ACK', 'BYE']);
});

test('splitList: empty elements and unterminated quotes are 400', () => {
  for (const bad of ['a,,b', ',a', 'a,', ' , ', 'a, ,b', '"a, b', '<sip:a@b>, "x']) {
    assertParseError(() => splitList(bad, 'Via'), bad);
  }
});

test('isToken', () => {
  assert.equal(isToken("INVITE"), true);
  assert.equal(isToken("a-b.c!d%e*f_g+h`i'j~k"), true);
  assert.equal(isToken(''), false);
  assert.equal(isToken('a b'), false);
  assert.equal(isToken('a,b'), false);
  assert.equal(isToken('a"b'), false);
  assert.equal(isToken('a:b'), false);
});
