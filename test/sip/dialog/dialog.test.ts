import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SipError } from '../../../src/sip/errors.ts';
import { Dialog, dialogId, type DialogRecord } from '../../../src/sip/dialog/dialog.ts';
import { createResponse, parseMessage, SipRequest, SipResponse } from '../../../src/sip/message/index.ts';

function parse(lines: string[], body = ''): SipRequest | SipResponse {
  return parseMessage(Buffer.from(lines.join('\r\n') + `\r\nContent-Length: ${body.length}\r\n\r\n` + body, 'latin1'));
}

function request(lines: string[], body = ''): SipRequest {
  const m = parse(lines, body);
  assert.ok(m instanceof SipRequest);
  return m;
}

const CALL_ID = 'dlg-1@192.0.2.10';

/** The INVITE as the UAS receives it (two proxies recorded their route; p2 is nearest to the UAS). */
function invite(extra: string[] = []): SipRequest {
  return request([
    'INVITE sip:bob@192.0.2.20 SIP/2.0',
    'Via: SIP/2.0/UDP p2.example.com;branch=z9hG4bKp2',
    'Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bKp1',
    'Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKuac',
    'Max-Forwards: 68',
    'From: "Alice" <sip:alice@example.com>;tag=alicetag',
    'To: <sip:bob@example.com>',
    `Call-ID: ${CALL_ID}`,
    'CSeq: 10 INVITE',
    'Contact: <sip:alice@192.0.2.10:5070;transport=udp>',
    'Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>',
    ...extra,
  ]);
}

/** A response to `req` with To tag `tag`, carrying the request's Record-Route (as on the wire) and a Contact. */
function reply(req: SipRequest, status: number, tag: string, contact = '<sip:bob@192.0.2.20:5080>'): SipResponse {
  const res = createResponse(req, status, undefined, tag);
  if (contact !== '') res.set('contact', contact);
  return res;
}

/** A UAC dialog as Alice has it after a 200 through p1 then p2. */
function uacDialog(rr = 'Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>'): Dialog {
  const inv = request([
    'INVITE sip:bob@example.com SIP/2.0',
    'Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKuac',
    'From: "Alice" <sip:alice@example.com>;tag=alicetag',
    'To: <sip:bob@example.com>',
    `Call-ID: ${CALL_ID}`,
    'CSeq: 10 INVITE',
    'Contact: <sip:alice@192.0.2.10:5070>',
  ]);
  const ok = parse([
    'SIP/2.0 200 OK',
    'Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKuac',
    ...(rr === '' ? [] : [rr]),
    'From: "Alice" <sip:alice@example.com>;tag=alicetag',
    'To: <sip:bob@example.com>;tag=bobtag',
    `Call-ID: ${CALL_ID}`,
    'CSeq: 10 INVITE',
    'Contact: <sip:bob@192.0.2.20:5080>',
  ]);
  assert.ok(ok instanceof SipResponse);
  return Dialog.fromUac(inv, ok);
}

/** A request from the peer within `d` (from the peer's view: its tag in From, ours in To). */
function fromPeer(d: Dialog, method: string, seq: number, extra: string[] = []): SipRequest {
  const r = d.record;
  return request([
    `${method} ${r.role === 'uas' ? 'sip:bob@192.0.2.20:5080' : 'sip:alice@192.0.2.10:5070'} SIP/2.0`,
    'Via: SIP/2.0/UDP 192.0.2.99;branch=z9hG4bKpeer' + seq,
    `From: ${r.remoteUri}`,
    `To: ${r.localUri}`,
    `Call-ID: ${r.callId}`,
    `CSeq: ${seq} ${method}`,
    ...extra,
  ]);
}

function responseTo(req: SipRequest, status: number, extra: string[] = []): SipResponse {
  const res = createResponse(req, status);
  for (const line of extra) {
    const i = line.indexOf(':');
    res.append(line.slice(0, i), line.slice(i + 1).trim());
  }
  return res;
}

describe('Dialog.fromUas', () => {
  test('1xx with a To tag makes an early dialog, 2xx a confirmed one', () => {
    const req = invite();
    const early = Dialog.fromUas(req, reply(req, 180, 'bobtag'));
    assert.equal(early.state, 'early');
    const confirmed = Dialog.fromUas(req, reply(req, 200, 'bobtag'));
    assert.equal(confirmed.state, 'confirmed');
  });

  test('the record: tags, CSeqs, URIs, remote target, route set in Record-Route order', () => {
    const req = invite();
    const d = Dialog.fromUas(req, reply(req, 200, 'bobtag'));
    const r = d.record;
    assert.equal(r.role, 'uas');
    assert.equal(r.callId, CALL_ID);
    assert.equal(r.localTag, 'bobtag');
    assert.equal(r.remoteTag, 'alicetag');
    assert.equal(r.localSeq, -1);
    assert.equal(r.remoteSeq, 10);
    assert.equal(r.inviteSeq, 10);
    assert.equal(r.localUri, '<sip:bob@example.com>;tag=bobtag');
    assert.equal(r.remoteUri, '"Alice" <sip:alice@example.com>;tag=alicetag');
    assert.equal(r.remoteTarget, 'sip:alice@192.0.2.10:5070;transport=udp');
    assert.deepEqual(r.routeSet, ['<sip:p2.example.com;lr>', '<sip:p1.example.com;lr>']);
    assert.equal(r.secure, false);
    assert.equal(d.id, dialogId(CALL_ID, 'bobtag', 'alicetag'));
  });

  test('Record-Route over several header fields keeps field order', () => {
    const req = request([
      'INVITE sip:bob@192.0.2.20 SIP/2.0',
      'Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1',
      'From: <sip:alice@example.com>;tag=a',
      'To: <sip:bob@example.com>',
      'Call-ID: rr-fields',
      'CSeq: 1 INVITE',
      'Contact: <sip:alice@192.0.2.10>',
      'Record-Route: <sip:p3.example.com;lr>',
      'Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>',
    ]);
    const d = Dialog.fromUas(req, reply(req, 200, 'b'));
    assert.deepEqual(d.record.routeSet, ['<sip:p3.example.com;lr>', '<sip:p2.example.com;lr>', '<sip:p1.example.com;lr>']);
  });

  test('a Record-Route entry that does not parse is the request\'s fault (400), caught when the dialog is made', () => {
    // Found by test/e2e/fuzz-wire.test.ts: the route set was first parsed for the BYE a timer sent when the 2xx
    // was never ACKed, and the node died of the exception.
    const req = invite(['Record-Route: {']);
    assert.throws(() => Dialog.fromUas(req, reply(req, 200, 'b')), (e: unknown) => e instanceof SipError && e.status === 400);
    const uacInvite = invite();
    const res = reply(uacInvite, 200, 'b');
    res.set('record-route', '<sip:p1.example.com;lr>, <');
    assert.throws(() => Dialog.fromUac(uacInvite, res), (e: unknown) => e instanceof SipError && e.status === 400);
  });

  test('a sips Request-URI makes the dialog secure', () => {
    const req = request([
      'INVITE sips:bob@example.com SIP/2.0',
      'Via: SIP/2.0/TLS 192.0.2.10;branch=z9hG4bK1',
      'From: <sips:alice@example.com>;tag=a',
      'To: <sips:bob@example.com>',
      'Call-ID: secure',
      'CSeq: 1 INVITE',
      'Contact: <sips:alice@192.0.2.10>',
    ]);
    assert.equal(Dialog.fromUas(req, reply(req, 200, 'b')).record.secure, true);
  });

  test('refuses a response without a To tag, and a request without Contact', () => {
    const req = invite();
    assert.throws(() => Dialog.fromUas(req, createResponse(req, 200)), (e: unknown) => e instanceof SipError && e.status === 500);
    const noContact = request([
      'INVITE sip:bob@192.0.2.20 SIP/2.0',
      'Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1',
      'From: <sip:alice@example.com>;tag=a',
      'To: <sip:bob@example.com>',
      'Call-ID: nocontact',
      'CSeq: 1 INVITE',
    ]);
    assert.throws(() => Dialog.fromUas(noContact, reply(noContact, 200, 'b')), (e: unknown) => e instanceof SipError && e.status === 400);
  });

  test('the remote target is the Contact URI as written, also with a quoted display name holding "<"', () => {
    const req = invite();
    req.set('contact', '"Alice <mobile>" <sip:alice@192.0.2.11:5072;ob>;expires=60');
    assert.equal(Dialog.fromUas(req, reply(req, 200, 't')).record.remoteTarget, 'sip:alice@192.0.2.11:5072;ob');
    req.set('contact', 'sip:alice@192.0.2.12;expires=60');
    assert.equal(Dialog.fromUas(req, reply(req, 200, 't')).record.remoteTarget, 'sip:alice@192.0.2.12');
  });
});

describe('Dialog.fromUac', () => {
  test('route set is the response Record-Route reversed; target from the response Contact', () => {
    const d = uacDialog();
    const r = d.record;
    assert.equal(r.role, 'uac');
    assert.equal(d.state, 'confirmed');
    assert.equal(r.localTag, 'alicetag');
    assert.equal(r.remoteTag, 'bobtag');
    assert.equal(r.localSeq, 10);
    assert.equal(r.remoteSeq, -1);
    assert.deepEqual(r.routeSet, ['<sip:p1.example.com;lr>', '<sip:p2.example.com;lr>']);
    assert.equal(r.remoteTarget, 'sip:bob@192.0.2.20:5080');
    assert.equal(d.id, dialogId(CALL_ID, 'alicetag', 'bobtag'));
  });

  test('a 1xx with a To tag gives an early dialog', () => {
    const req = invite();
    const d = Dialog.fromUac(req, reply(req, 183, 'early1'));
    assert.equal(d.state, 'early');
  });

  test('forked early dialogs: two 180s with different To tags to one INVITE give two distinct dialogs', () => {
    const req = invite();
    const r1 = reply(req, 180, 'fork-a', '<sip:bob@192.0.2.21>');
    const r2 = reply(req, 180, 'fork-b', '<sip:bob@192.0.2.22>');
    const d1 = Dialog.fromUac(req, r1);
    const d2 = Dialog.fromUac(req, r2);
    assert.notEqual(d1.id, d2.id);
    assert.equal(Dialog.idForResponse(r1), d1.id);
    assert.equal(Dialog.idForResponse(r2), d2.id);
    assert.equal(d1.record.remoteTarget, 'sip:bob@192.0.2.21');
    assert.equal(d2.record.remoteTarget, 'sip:bob@192.0.2.22');
    assert.equal(d1.state, 'early');
    assert.equal(d2.state, 'early');
  });

  test('a response without a To tag cannot make a dialog', () => {
    const req = invite();
    assert.throws(() => Dialog.fromUac(req, createResponse(req, 180)), SipError);
  });
});

describe('Dialog ids of messages', () => {
  test('a request from the peer maps to the dialog (our tag in To), a response to ours (our tag in From)', () => {
    const uas = (() => {
      const req = invite();
      return Dialog.fromUas(req, reply(req, 200, 'bobtag'));
    })();
    const bye = fromPeer(uas, 'BYE', 11);
    assert.equal(Dialog.idForRequest(bye), uas.id);
    const uac = uacDialog();
    const ours = uac.createRequest('INFO');
    assert.equal(Dialog.idForResponse(createResponse(ours, 200)), uac.id);
    // No To tag: not in a dialog.
    assert.equal(Dialog.idForRequest(invite()), null);
  });
});

describe('Dialog.createRequest', () => {
  test('tags, Call-ID, Max-Forwards; CSeq increments; ACK and CANCEL reuse the INVITE CSeq', () => {
    const d = uacDialog();
    const info = d.createRequest('INFO');
    assert.equal(info.method, 'INFO');
    assert.equal(info.fromTag, 'alicetag');
    assert.equal(info.toTag, 'bobtag');
    assert.equal(info.get('from'), '"Alice" <sip:alice@example.com>;tag=alicetag');
    assert.equal(info.get('to'), '<sip:bob@example.com>;tag=bobtag');
    assert.equal(info.callId, CALL_ID);
    assert.equal(info.maxForwards, 70);
    assert.deepEqual(info.cseq, { seq: 11, method: 'INFO' });
    assert.deepEqual(d.createRequest('UPDATE').cseq, { seq: 12, method: 'UPDATE' });
    const ack = d.createRequest('ACK');
    assert.deepEqual(ack.cseq, { seq: 10, method: 'ACK' }, 'ACK reuses the INVITE CSeq');
    assert.deepEqual(d.createRequest('CANCEL').cseq, { seq: 10, method: 'CANCEL' });
    assert.equal(d.record.localSeq, 12, 'ACK/CANCEL do not advance the local CSeq');
    const reinvite = d.createRequest('INVITE');
    assert.deepEqual(reinvite.cseq, { seq: 13, method: 'INVITE' });
    assert.deepEqual(d.createRequest('ACK').cseq, { seq: 13, method: 'ACK' }, 'ACK follows the re-INVITE');
    assert.deepEqual(d.createRequest('ACK', { seq: 10 }).cseq, { seq: 10, method: 'ACK' }, 'explicit seq');
    // A complete request once the transport adds its Via.
    info.prepend('via', 'SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKinfo');
    const back = parseMessage(info.toBuffer());
    assert.ok(back instanceof SipRequest);
    back.validate();
  });

  test('a UAS starts its own CSeq space', () => {
    const req = invite();
    const d = Dialog.fromUas(req, reply(req, 200, 'bobtag'));
    const bye = d.createRequest('BYE');
    assert.ok(bye.cseq.seq >= 1 && bye.cseq.seq < 0x80000000);
    assert.equal(bye.fromTag, 'bobtag');
    assert.equal(bye.toTag, 'alicetag');
    assert.equal(d.createRequest('INFO').cseq.seq, bye.cseq.seq + 1);
  });

  test('loose routing: the route set in Route headers, the remote target in the Request-URI', () => {
    const d = uacDialog();
    const bye = d.createRequest('BYE');
    assert.equal(bye.uriText, 'sip:bob@192.0.2.20:5080');
    assert.deepEqual(bye.getAll('route'), ['<sip:p1.example.com;lr>', '<sip:p2.example.com;lr>']);
    // Route headers come first, in order.
    assert.deepEqual(bye.headers.slice(0, 2).map((h) => h.key), ['route', 'route']);
  });

  test('no route set: no Route header', () => {
    const d = uacDialog('');
    const bye = d.createRequest('BYE');
    assert.equal(bye.uriText, 'sip:bob@192.0.2.20:5080');
    assert.equal(bye.has('route'), false);
  });

  test('strict routing: the first route in the Request-URI, the remote target as the last Route', () => {
    const d = uacDialog('Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com>');
    assert.deepEqual(d.record.routeSet, ['<sip:p1.example.com>', '<sip:p2.example.com;lr>']);
    const bye = d.createRequest('BYE');
    assert.equal(bye.uriText, 'sip:p1.example.com');
    assert.deepEqual(bye.getAll('route'), ['<sip:p2.example.com;lr>', '<sip:bob@192.0.2.20:5080>']);
  });

  test('Contact only where it belongs; extra headers and body carried', () => {
    const d = uacDialog();
    const contact = '<sip:alice@192.0.2.10:5070>';
    assert.equal(d.createRequest('INVITE', { contact }).get('contact'), contact);
    assert.equal(d.createRequest('UPDATE', { contact }).get('contact'), contact);
    assert.equal(d.createRequest('BYE', { contact }).has('contact'), false);
    assert.equal(d.createRequest('ACK', { contact }).has('contact'), false);
    const m = d.createRequest('MESSAGE', { headers: [{ name: 'Content-Type', key: 'content-type', value: 'text/plain' }], body: Buffer.from('hi') });
    assert.equal(m.get('content-type'), 'text/plain');
    assert.equal(m.body.toString(), 'hi');
  });
});

describe('Dialog.receiveRequest', () => {
  function uas(): Dialog {
    const req = invite();
    return Dialog.fromUas(req, reply(req, 200, 'bobtag'));
  }

  test('a lower CSeq is a SipError with status 500; equal or higher pass', () => {
    const d = uas();
    d.receiveRequest(fromPeer(d, 'INFO', 12));
    assert.equal(d.record.remoteSeq, 12);
    assert.throws(
      () => d.receiveRequest(fromPeer(d, 'INFO', 11)),
      (e: unknown) => e instanceof SipError && e.status === 500 && e.code === 'SIP_INVALID_STATE',
    );
    assert.equal(d.record.remoteSeq, 12, 'unchanged by the rejected request');
    d.receiveRequest(fromPeer(d, 'INFO', 12));
    d.receiveRequest(fromPeer(d, 'INFO', 20));
    assert.equal(d.record.remoteSeq, 20);
  });

  test('ACK and CANCEL carry the INVITE CSeq and are never "out of order"', () => {
    const d = uas();
    d.receiveRequest(fromPeer(d, 'INFO', 15));
    d.receiveRequest(fromPeer(d, 'ACK', 10));
    assert.equal(d.record.remoteSeq, 15);
  });

  test('a UAC dialog takes the first request from the peer at any CSeq', () => {
    const d = uacDialog();
    assert.equal(d.record.remoteSeq, -1);
    d.receiveRequest(fromPeer(d, 'INFO', 3));
    assert.equal(d.record.remoteSeq, 3);
  });

  test('target refresh on re-INVITE and UPDATE with Contact, not on INFO', () => {
    const d = uas();
    d.receiveRequest(fromPeer(d, 'INFO', 11, ['Contact: <sip:alice@198.51.100.1>']));
    assert.equal(d.record.remoteTarget, 'sip:alice@192.0.2.10:5070;transport=udp');
    d.receiveRequest(fromPeer(d, 'INVITE', 12, ['Contact: <sip:alice@198.51.100.2:5090>']));
    assert.equal(d.record.remoteTarget, 'sip:alice@198.51.100.2:5090');
    assert.equal(d.record.inviteSeq, 12);
    d.receiveRequest(fromPeer(d, 'UPDATE', 13, ['Contact: "A" <sip:alice@198.51.100.3>']));
    assert.equal(d.record.remoteTarget, 'sip:alice@198.51.100.3');
    d.receiveRequest(fromPeer(d, 'UPDATE', 14));
    assert.equal(d.record.remoteTarget, 'sip:alice@198.51.100.3', 'no Contact: target kept');
    assert.equal(d.createRequest('BYE').uriText, 'sip:alice@198.51.100.3');
  });

  test('BYE terminates', () => {
    const d = uas();
    d.receiveRequest(fromPeer(d, 'BYE', 11));
    assert.equal(d.state, 'terminated');
  });
});

describe('Dialog.receiveResponse', () => {
  function earlyUac(): { d: Dialog; req: SipRequest } {
    const req = invite();
    return { d: Dialog.fromUac(req, reply(req, 180, 'bobtag')), req };
  }

  test('2xx to the INVITE confirms an early dialog and refreshes the target', () => {
    const { d, req } = earlyUac();
    const ok = reply(req, 200, 'bobtag', '<sip:bob@192.0.2.30:5090>');
    d.receiveResponse(ok);
    assert.equal(d.state, 'confirmed');
    assert.equal(d.record.remoteTarget, 'sip:bob@192.0.2.30:5090');
  });

  test('the 2xx that confirms an early dialog sets the route set (§13.2.2.4)', () => {
    const { d, req } = earlyUac();
    assert.deepEqual(d.record.routeSet, ['<sip:p1.example.com;lr>', '<sip:p2.example.com;lr>']);
    const ok = reply(req, 200, 'bobtag');
    ok.set('record-route', '<sip:p3.example.com;lr>, <sip:p1.example.com;lr>');
    d.receiveResponse(ok);
    assert.deepEqual(d.record.routeSet, ['<sip:p1.example.com;lr>', '<sip:p3.example.com;lr>']);
  });

  test('a non-2xx final response to the INVITE ends an early dialog', () => {
    const { d, req } = earlyUac();
    d.receiveResponse(reply(req, 486, 'bobtag'));
    assert.equal(d.state, 'terminated');
  });

  test('481 (and 408) to an in-dialog request terminates; other errors do not', () => {
    const d = uacDialog();
    d.receiveResponse(responseTo(d.createRequest('INFO'), 488));
    assert.equal(d.state, 'confirmed');
    d.receiveResponse(responseTo(d.createRequest('INVITE'), 491));
    assert.equal(d.state, 'confirmed', 'a failed re-INVITE keeps the dialog');
    d.receiveResponse(responseTo(d.createRequest('INFO'), 481));
    assert.equal(d.state, 'terminated');
    const d2 = uacDialog();
    d2.receiveResponse(responseTo(d2.createRequest('BYE'), 408));
    assert.equal(d2.state, 'terminated');
  });

  test('a 2xx to a re-INVITE or UPDATE with Contact refreshes the target; a confirmed route set stays', () => {
    const d = uacDialog();
    const routes = d.record.routeSet.slice();
    const re = d.createRequest('INVITE');
    const ok = responseTo(re, 200, ['Contact: <sip:bob@203.0.113.5>', 'Record-Route: <sip:other.example.com;lr>']);
    d.receiveResponse(ok);
    assert.equal(d.record.remoteTarget, 'sip:bob@203.0.113.5');
    assert.deepEqual(d.record.routeSet, routes);
  });
});

describe('toJSON / fromJSON', () => {
  test('round trip through JSON text gives the same dialog, independent of the original', () => {
    const d = uacDialog('Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com>');
    d.createRequest('INFO');
    const text = JSON.stringify(d);
    const record = JSON.parse(text) as DialogRecord;
    const copy = Dialog.fromJSON(record);
    assert.deepEqual(copy.record, d.record);
    assert.equal(copy.id, d.id);
    assert.equal(copy.state, d.state);
    // Both continue the same way.
    assert.equal(copy.createRequest('BYE').toString(), d.createRequest('BYE').toString());
    // No shared state.
    copy.record.routeSet.push('<sip:x.example.com;lr>');
    copy.terminate();
    assert.equal(d.record.routeSet.length, 2);
    assert.equal(d.state, 'confirmed');
    record.routeSet.push('<sip:y.example.com;lr>');
    assert.equal(copy.record.routeSet.length, 3);
    const json = d.toJSON();
    json.routeSet.pop();
    assert.equal(d.record.routeSet.length, 2);
  });
});
