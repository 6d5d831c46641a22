import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SipParseError } from '../../../src/sip/errors.ts';
import {
  canonicalName,
  formatUri,
  headerKey,
  isSipUri,
  parseMessage,
  parseUri,
  reasonPhrase,
  SipRequest,
  SipResponse,
} from '../../../src/sip/message/index.ts';

const TEXT =
  'INVITE sip:bob@biloxi.com;Transport=UDP SIP/2.0\r\n' +
  'Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bK1, SIP/2.0/UDP p2.example.com;branch=z9hG4bK2\r\n' +
  'Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK3\r\n' +
  'Route: <sip:r1.example.com;lr>, <sip:r2.example.com;lr>\r\n' +
  'Max-Forwards: 70\r\n' +
  'To: Bob <sip:bob@biloxi.com>\r\n' +
  'From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n' +
  'Call-ID: a84b4c76e66710\r\n' +
  'CSeq: 314159 INVITE\r\n' +
  'Content-Length: 0\r\n' +
  '\r\n';

function req(): SipRequest {
  const m = parseMessage(Buffer.from(TEXT));
  assert.ok(m instanceof SipRequest);
  return m;
}

test('get / has / getAll', () => {
  const m = req();
  assert.equal(m.get('VIA'), 'SIP/2.0/UDP p1.example.com;branch=z9hG4bK1, SIP/2.0/UDP p2.example.com;branch=z9hG4bK2');
  assert.equal(m.has('v'), true);
  assert.equal(m.has('Subject'), false);
  assert.equal(m.get('Subject'), undefined);
  assert.deepEqual(m.getAll('Subject'), []);
  assert.equal(m.getAll('via').length, 3);
  assert.deepEqual(m.getAll('route'), ['<sip:r1.example.com;lr>', '<sip:r2.example.com;lr>']);
});

test('set replaces every field in place, keeping the first name as written; invalidates cached views', () => {
  const m = req();
  assert.equal(m.vias.length, 3);
  m.set('v', 'SIP/2.0/TCP new.example.com;branch=z9hG4bKnew');
  assert.equal(m.vias.length, 1);
  assert.equal(m.topVia.host, 'new.example.com');
  assert.equal(m.headers[0]!.name, 'Via');
  assert.equal(m.headers.filter((h) => h.key === 'via').length, 1);
  assert.equal(m.fromTag, '1928301774');
  m.set('From', '<sip:carol@chicago.com>;tag=9');
  assert.equal(m.fromTag, '9');
  assert.equal(m.to.displayName, 'Bob');
  m.set('to', '<sip:dave@example.com>;tag=t');
  assert.equal(m.toTag, 't');
  assert.equal(m.cseq.seq, 314159);
  m.set('CSeq', '5 INVITE');
  assert.equal(m.cseq.seq, 5);
  // a new header goes at the end with its canonical name
  m.set('call-info', 42);
  assert.deepEqual(m.headers.at(-1), { name: 'Call-Info', key: 'call-info', value: '42' });
  m.set('www-authenticate', 'Digest realm="x"');
  assert.equal(m.headers.at(-1)!.name, 'WWW-Authenticate');
});

test('append / prepend / remove', () => {
  const m = req();
  void m.vias;
  m.prepend('Via', 'SIP/2.0/UDP proxy.example.com;branch=z9hG4bKtop');
  assert.equal(m.topVia.branch, 'z9hG4bKtop');
  assert.equal(m.vias.length, 4);
  assert.equal(m.headers[0]!.value, 'SIP/2.0/UDP proxy.example.com;branch=z9hG4bKtop');
  m.append('via', 'SIP/2.0/UDP last.example.com;branch=z9hG4bKlast');
  assert.equal(m.vias.at(-1)!.branch, 'z9hG4bKlast');
  assert.equal(m.headers.at(-1)!.name, 'Via');
  m.prepend('Record-Route', '<sip:rr.example.com;lr>');
  assert.equal(m.headers[0]!.key, 'record-route');
  m.remove('v');
  assert.equal(m.has('via'), false);
  assert.deepEqual(m.vias, []);
  assert.throws(() => m.topVia, (e: unknown) => e instanceof SipParseError && e.status === 400);
  assert.throws(() => m.validate(), SipParseError);
});

test('removeFirst / replaceFirst work on list elements', () => {
  const m = req();
  assert.equal(m.vias.length, 3);
  assert.equal(m.removeFirst('via'), 'SIP/2.0/UDP p1.example.com;branch=z9hG4bK1');
  assert.deepEqual(m.vias.map((v) => v.branch), ['z9hG4bK2', 'z9hG4bK3']);
  assert.equal(m.get('via'), 'SIP/2.0/UDP p2.example.com;branch=z9hG4bK2');
  assert.equal(m.removeFirst('via'), 'SIP/2.0/UDP p2.example.com;branch=z9hG4bK2');
  // the emptied field is gone; the next field is now first
  assert.equal(m.get('via'), 'SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK3');
  m.replaceFirst('via', 'SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK3;received=192.0.2.1;rport=5066');
  assert.equal(m.topVia.received, '192.0.2.1');
  assert.equal(m.topVia.rport, 5066);
  assert.equal(m.removeFirst('route'), '<sip:r1.example.com;lr>');
  assert.deepEqual(m.routes().map((r) => formatUri(r.uri)), ['sip:r2.example.com;lr']);
  assert.equal(m.removeFirst('subject'), undefined);
  m.replaceFirst('subject', 'ignored');
  assert.equal(m.has('subject'), false);
});

test('clone: independent headers, shared body, URI text kept', () => {
  const m = req();
  const uri = m.uri;
  assert.ok(isSipUri(uri));
  const c = m.clone();
  assert.ok(c instanceof SipRequest);
  assert.ok(c.toBuffer().equals(m.toBuffer()));
  assert.equal(c.uriText, 'sip:bob@biloxi.com;Transport=UDP');
  c.set('Max-Forwards', 69);
  c.removeFirst('via');
  c.headers[c.headers.length - 1]!.value = 'changed';
  assert.equal(m.get('max-forwards'), '70');
  assert.equal(m.vias.length, 3);
  assert.equal(m.get('content-length'), '0');
  // the clone's parsed URI is its own
  const cu = c.uri;
  assert.ok(isSipUri(cu));
  cu.params.set('lr', null);
  assert.equal(uri.params.has('lr'), false);
  assert.notEqual(c.uri, m.uri);
  // a request whose URI was set as an object clones it, too
  const built = new SipRequest('OPTIONS', parseUri('sip:x@y'), []);
  const bc = built.clone();
  assert.ok(isSipUri(bc.uri) && isSipUri(built.uri));
  assert.notEqual(bc.uri, built.uri);
  assert.equal(bc.uriText, 'sip:x@y');
  const r = new SipResponse(200, undefined, [{ name: 'Via', key: 'via', value: 'SIP/2.0/UDP h' }], Buffer.from('b'));
  const rc = r.clone();
  rc.set('via', 'SIP/2.0/UDP x');
  rc.append('Subject', 's');
  rc.status = 404;
  assert.equal(r.get('via'), 'SIP/2.0/UDP h');
  assert.equal(r.headers.length, 1);
  assert.equal(r.status, 200);
  assert.equal(rc.body, r.body);
});

test('request URI setter: string or object', () => {
  const m = req();
  m.uri = 'sip:carol@chicago.com';
  assert.equal(m.uriText, 'sip:carol@chicago.com');
  assert.ok(isSipUri(m.uri));
  assert.equal(m.uri.user, 'carol');
  m.uri = parseUri('sips:dave@example.com:5061');
  assert.equal(m.uriText, 'sips:dave@example.com:5061');
  assert.match(m.toString(), /^INVITE sips:dave@example\.com:5061 SIP\/2\.0\r\n/);
});

test('constructed messages serialise and parse back', () => {
  const r = new SipRequest('MESSAGE', 'sip:bob@biloxi.com', [], Buffer.from('hello'));
  r.append('Via', 'SIP/2.0/UDP h;branch=z9hG4bK1').append('From', '<sip:a@b>;tag=1').append('To', '<sip:bob@biloxi.com>');
  r.append('Call-ID', 'c1').append('CSeq', '1 MESSAGE').append('Max-Forwards', 70).append('content-type', 'text/plain');
  r.validate();
  const text = r.toString();
  assert.equal(
    text,
    'MESSAGE sip:bob@biloxi.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:bob@biloxi.com>\r\n' +
      'Call-ID: c1\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello',
  );
  const back = parseMessage(Buffer.from(text));
  back.validate();
  assert.ok(back.toBuffer().equals(r.toBuffer()));
  const resp = new SipResponse(503);
  assert.equal(resp.reason, 'Service Unavailable');
  assert.equal(resp.toString(), 'SIP/2.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n');
});

test('header names that are Object.prototype members are ordinary headers', () => {
  for (const name of ['constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf']) {
    assert.equal(headerKey(name), name.toLowerCase());
    assert.equal(typeof canonicalName(name.toLowerCase()), 'string');
  }
  const m = parseMessage(Buffer.from('OPTIONS sip:a@b SIP/2.0\r\nconstructor: 1\r\n__proto__: 2\r\ntoString: 3\r\n\r\n'));
  assert.equal(m.get('constructor'), '1');
  assert.equal(m.get('__proto__'), '2');
  assert.equal(m.get('tostring'), '3');
  m.set('valueOf', 'v');
  assert.equal(m.headers.at(-1)!.name, 'Valueof');
  assert.match(m.toString(), /\r\nValueof: v\r\n/);
  assert.ok(m.toString().startsWith('OPTIONS sip:a@b SIP/2.0\r\nconstructor: 1\r\n__proto__: 2\r\ntoString: 3\r\n'));
});

test('headerKey / canonicalName / reasonPhrase', () => {
  assert.equal(headerKey('V'), 'via');
  assert.equal(headerKey('Call-ID'), 'call-id');
  assert.equal(headerKey('x'), 'session-expires');
  assert.equal(canonicalName('call-id'), 'Call-ID');
  assert.equal(canonicalName('cseq'), 'CSeq');
  assert.equal(canonicalName('record-route'), 'Record-Route');
  assert.equal(canonicalName('p-asserted-identity'), 'P-Asserted-Identity');
  assert.equal(reasonPhrase(486), 'Busy Here');
  assert.equal(reasonPhrase(199), 'Progress');
  assert.equal(reasonPhrase(299), 'OK');
  assert.equal(reasonPhrase(499), 'Error');
});

test('maxForwards', () => {
  const m = req();
  assert.equal(m.maxForwards, 70);
  m.remove('max-forwards');
  assert.equal(m.maxForwards, null);
  m.validate();
});
