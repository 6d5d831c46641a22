import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SipParseError } from '../../../src/sip/errors.ts';
import { defaultPort, MAGIC_COOKIE, parseVia } from '../../../src/sip/message/via.ts';

function assertBadVia(text: string): void {
  assert.throws(() => parseVia(text), (e: unknown) => e instanceof SipParseError && e.status === 400, text);
}

test('basic Via with branch', () => {
  const v = parseVia('SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds');
  assert.equal(v.transport, 'UDP');
  assert.equal(v.host, 'pc33.atlanta.com');
  assert.equal(v.port, null);
  assert.equal(v.branch, 'z9hG4bK776asdhds');
  assert.ok(v.branch!.startsWith(MAGIC_COOKIE));
  assert.equal(v.received, null);
  assert.equal(v.rport, null);
  assert.equal(v.maddr, null);
  assert.equal(v.ttl, null);
  assert.equal(v.params.get('branch'), 'z9hG4bK776asdhds');
});

test('port, received, rport with a value', () => {
  const v = parseVia('SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74b43;received=192.0.2.101;rport=5066');
  assert.equal(v.transport, 'TCP');
  assert.equal(v.port, 5060);
  assert.equal(v.received, '192.0.2.101');
  assert.equal(v.rport, 5066);
});

test('rport without a value is -1, absent is null', () => {
  assert.equal(parseVia('SIP/2.0/UDP h;rport;branch=z9hG4bK1').rport, -1);
  assert.equal(parseVia('SIP/2.0/UDP h;branch=z9hG4bK1;rport').rport, -1);
  assert.equal(parseVia('SIP/2.0/UDP h;branch=z9hG4bK1').rport, null);
  assert.equal(parseVia('SIP/2.0/UDP h;branch=z9hG4bK1;rport=0').rport, 0);
  assert.equal(parseVia('SIP/2.0/UDP h;branch=z9hG4bK1;rport=65535').rport, 65535);
});

test('maddr and ttl', () => {
  const v = parseVia('SIP/2.0/UDP 192.0.2.1:5060;maddr=239.255.255.1;ttl=16;branch=z9hG4bKabc');
  assert.equal(v.maddr, '239.255.255.1');
  assert.equal(v.ttl, 16);
  assert.equal(parseVia('SIP/2.0/UDP h;ttl=0').ttl, 0);
  assert.equal(parseVia('SIP/2.0/UDP h;ttl=255').ttl, 255);
});

test('no branch (RFC 2543 peers) is allowed, a branch flag is not', () => {
  assert.equal(parseVia('SIP/2.0/UDP 192.0.2.1').branch, null);
  assertBadVia('SIP/2.0/UDP 192.0.2.1;branch');
});

test('IPv6 sent-by, with and without port, IPv6 received', () => {
  const a = parseVia('SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111;received=2001:db8::9:255');
  assert.equal(a.host, '[2001:db8::9:1]');
  assert.equal(a.port, 6050);
  assert.equal(a.received, '2001:db8::9:255');
  const b = parseVia('SIP/2.0/TCP [2001:DB8::1];branch=z9hG4bK1;received=[2001:db8::2]');
  assert.equal(b.host, '[2001:db8::1]');
  assert.equal(b.port, null);
  assert.equal(b.received, '[2001:db8::2]');
});

test('LWS around the slashes, the colon, ";" and "="', () => {
  const v = parseVia('SIP / 2.0 / UDP first.example.com: 4000;ttl=16\t;maddr=224.2.0.1 ;branch=z9hG4bKa7c6a8dlze.1');
  assert.equal(v.transport, 'UDP');
  assert.equal(v.host, 'first.example.com');
  assert.equal(v.port, 4000);
  assert.equal(v.ttl, 16);
  assert.equal(v.maddr, '224.2.0.1');
  assert.equal(v.branch, 'z9hG4bKa7c6a8dlze.1');
  const w = parseVia('  SIP\t/2.0/\tTLS   host.example.com  :  5061 ; branch = z9hG4bK9 ; rport');
  assert.equal(w.transport, 'TLS');
  assert.equal(w.host, 'host.example.com');
  assert.equal(w.port, 5061);
  assert.equal(w.branch, 'z9hG4bK9');
  assert.equal(w.rport, -1);
});

test('transport and host are case-normalised, branch is not', () => {
  const v = parseVia('sip/2.0/udp PC33.Atlanta.COM;Branch=z9hG4bKAbC');
  assert.equal(v.transport, 'UDP');
  assert.equal(v.host, 'pc33.atlanta.com');
  assert.equal(v.branch, 'z9hG4bKAbC');
});

test('unknown transports are kept (RFC 4475 §3.1.1.10)', () => {
  assert.equal(parseVia('SIP/2.0/UNKNOWN t3.example.com;branch=z9hG4bK1').transport, 'UNKNOWN');
  assert.equal(parseVia('SIP/2.0/SCTP t2.example.com;branch=z9hG4bK1').transport, 'SCTP');
  assert.equal(parseVia('SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK1').transport, 'WSS');
});

test('other parameters are kept, names lower-cased, quoted values whole', () => {
  const v = parseVia('SIP/2.0/UDP h;branch=z9hG4bK1;Hidden;comp=sigcomp;x="a b"');
  assert.equal(v.params.get('hidden'), null);
  assert.equal(v.params.get('comp'), 'sigcomp');
  assert.equal(v.params.get('x'), '"a b"');
});

test('malformed Via values are 400', () => {
  for (const bad of [
    '',
    'SIP/2.0/UDP',
    'SIP/2.0/UDP ',
    'SIP/2.0 host',
    'SIP/2.0/UDPhost',
    'HTTP/1.1/TCP host',
    'SIP/3.0/UDP host',
    'SIP/2.0/UDP host:',
    'SIP/2.0/UDP host:abc',
    'SIP/2.0/UDP host:123456',
    'SIP/2.0/UDP host:70000',
    'SIP/2.0/UDP ho_st',
    'SIP/2.0/UDP [2001:db8::1',
    'SIP/2.0/UDP host;',
    'SIP/2.0/UDP host;branch=',
    'SIP/2.0/UDP host;rport=abc',
    'SIP/2.0/UDP host;rport=70000',
    'SIP/2.0/UDP host;ttl',
    'SIP/2.0/UDP host;ttl=256',
    'SIP/2.0/UDP host;ttl=-1',
    'SIP/2.0/UDP host junk',
    'SIP/2.0/UDP host;x="open',
    'SIP/2.0/UDP h1, SIP/2.0/UDP h2',
  ]) {
    assertBadVia(bad);
  }
});

test('defaultPort', () => {
  assert.equal(defaultPort('UDP'), 5060);
  assert.equal(defaultPort('TCP'), 5060);
  assert.equal(defaultPort('WS'), 5060);
  assert.equal(defaultPort('TLS'), 5061);
  assert.equal(defaultPort('WSS'), 5061);
});
