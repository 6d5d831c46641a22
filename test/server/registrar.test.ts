import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, before, describe, test } from 'node:test';
import proxyApp from '../../apps/proxy.ts';
import { AppContainer } from '../../src/server/app/container.ts';
import { SipNode } from '../../src/server/node.ts';
import { Registrar } from '../../src/server/registrar.ts';
import { parseMessage } from '../../src/sip/message/parser.ts';
import type { SipRequest, SipResponse } from '../../src/sip/message/message.ts';
import { openStores } from '../../src/store/index.ts';
import type { Stores } from '../../src/store/options.ts';

describe('registrar (RFC 3261 §10.3) on a node, over the in-memory store', () => {
  let node: SipNode;
  let stores: Stores;
  let client: dgram.Socket;
  let port: number;
  let cseq = 0;
  let branch = 0;

  before(async () => {
    stores = await openStores('memory:');
    const registrar = new Registrar({ location: stores.location, minExpires: 60, maxExpires: 3600 });
    node = await SipNode.start({ listen: [{ protocol: 'UDP', host: '127.0.0.1', port: 0 }], app: new AppContainer({ apps: [proxyApp({ registrar })] }) });
    port = node.stack.transport.listening[0]!.port;
    client = dgram.createSocket('udp4');
    await new Promise<void>((r) => client.bind(0, '127.0.0.1', () => r()));
  });

  after(async () => {
    client.close();
    await node.close();
    await stores.close();
  });

  function register(user: string, contacts: string[], extra: string[] = [], callId = `reg-${user}`): Promise<SipResponse> {
    const lines = [
      'REGISTER sip:127.0.0.1 SIP/2.0',
      `Via: SIP/2.0/UDP 127.0.0.1:${client.address().port};branch=z9hG4bKr${++branch}`,
      'Max-Forwards: 70',
      `From: <sip:${user}@example.com>;tag=f${branch}`,
      `To: <sip:${user}@example.com>`,
      `Call-ID: ${callId}`,
      `CSeq: ${++cseq} REGISTER`,
      ...contacts.map((c) => `Contact: ${c}`),
      ...extra,
      'Content-Length: 0', '', '',
    ];
    const res = new Promise<SipResponse>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no response')), 2000);
      client.once('message', (m) => { clearTimeout(t); resolve(parseMessage(m) as SipResponse); });
    });
    client.send(Buffer.from(lines.join('\r\n')), port, '127.0.0.1');
    return res;
  }

  test('several bindings, q-values ordered best first, each with its expiry', async () => {
    const res = await register('alice', ['<sip:alice@10.0.0.1>;q=0.5', '<sip:alice@10.0.0.2>;q=0.9;expires=120'], ['Expires: 600']);
    assert.equal(res.status, 200);
    assert.notEqual(res.toTag, null, 'the 200 carries a To tag');
    const bindings = await stores.location.lookup('sip:alice@example.com');
    assert.deepEqual(bindings.map((b) => [b.contact, b.q]), [['sip:alice@10.0.0.2', 0.9], ['sip:alice@10.0.0.1', 0.5]]);
    const contacts = res.getAll('contact');
    assert.equal(contacts.length, 2);
    assert.ok(contacts.some((c) => /10\.0\.0\.2>;expires=120/.test(c)) && contacts.some((c) => /10\.0\.0\.1>;expires=600/.test(c)), contacts.join(' | '));
  });

  test('too brief an interval gets 423 with Min-Expires; too long is capped', async () => {
    const brief = await register('bob', ['<sip:bob@10.0.0.3>'], ['Expires: 30']);
    assert.equal(brief.status, 423);
    assert.equal(brief.get('min-expires'), '60');
    const long = await register('bob', ['<sip:bob@10.0.0.3>'], ['Expires: 999999']);
    assert.equal(long.status, 200);
    assert.match(long.get('contact')!, /expires=3600/);
  });

  test('expires=0 removes one binding; Contact: * with Expires: 0 removes all; * otherwise is 400', async () => {
    await register('carol', ['<sip:carol@10.0.0.4>', '<sip:carol@10.0.0.5>'], ['Expires: 600']);
    await register('carol', ['<sip:carol@10.0.0.4>;expires=0']);
    assert.deepEqual((await stores.location.lookup('sip:carol@example.com')).map((b) => b.contact), ['sip:carol@10.0.0.5']);
    assert.equal((await register('carol', ['*'], ['Expires: 60'])).status, 400);
    assert.equal((await register('carol', ['*', '<sip:carol@10.0.0.6>'], ['Expires: 0'])).status, 400);
    assert.equal((await register('carol', ['*'], ['Expires: 0'])).status, 200);
    assert.deepEqual(await stores.location.lookup('sip:carol@example.com'), []);
  });

  test('Path and +sip.instance/reg-id are kept; the same instance and reg-id replace the old contact (RFC 5626)', async () => {
    const instance = '"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"';
    await register('dave', [`<sip:dave@10.0.0.7>;+sip.instance=${instance};reg-id=1`], ['Path: <sip:edge1.example.com;lr>', 'Expires: 600']);
    await register('dave', [`<sip:dave@10.0.0.8>;+sip.instance=${instance};reg-id=1`], ['Path: <sip:edge2.example.com;lr>', 'Expires: 600']);
    const b = await stores.location.lookup('sip:dave@example.com');
    assert.equal(b.length, 1);
    assert.equal(b[0]!.contact, 'sip:dave@10.0.0.8');
    assert.deepEqual(b[0]!.path, ['<sip:edge2.example.com;lr>']);
    assert.equal(b[0]!.regId, 1);
    assert.match(b[0]!.instanceId!, /urn:uuid:00000000/);
  });

  test('an older CSeq for the same Call-ID is refused (§10.3 step 7)', async () => {
    await register('erin', ['<sip:erin@10.0.0.9>'], ['Expires: 600'], 'same-call-id');
    cseq -= 5; // the next REGISTER goes out with a lower CSeq on the same Call-ID
    const res = await register('erin', ['<sip:erin@10.0.0.9>'], ['Expires: 600'], 'same-call-id');
    assert.equal(res.status, 500);
    cseq += 10;
  });

  test('a request to an AOR registered through an edge proxy goes via its Path (RFC 3327)', async () => {
    const edge = dgram.createSocket('udp4');
    await new Promise<void>((r) => edge.bind(0, '127.0.0.1', () => r()));
    const edgeUri = `<sip:127.0.0.1:${edge.address().port};lr>`;
    try {
      assert.equal((await register('frank', ['<sip:frank@10.0.0.10:5070>'], [`Path: ${edgeUri}`, 'Expires: 600'])).status, 200);
      const got = new Promise<string>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('the edge got nothing')), 2000);
        edge.once('message', (m) => { clearTimeout(t); resolve(m.toString('latin1')); });
      });
      const invite = [
        'INVITE sip:frank@example.com SIP/2.0',
        `Via: SIP/2.0/UDP 127.0.0.1:${client.address().port};branch=z9hG4bKpath${++branch}`,
        'Max-Forwards: 70', `From: <sip:caller@example.com>;tag=p${branch}`, 'To: <sip:frank@example.com>',
        'Call-ID: path-test', 'CSeq: 1 INVITE', `Contact: <sip:caller@127.0.0.1:${client.address().port}>`, 'Content-Length: 0', '', '',
      ].join('\r\n');
      client.send(Buffer.from(invite), port, '127.0.0.1');
      const forwarded = parseMessage(Buffer.from(await got, 'latin1'));
      assert.ok(forwarded.isRequest);
      assert.equal((forwarded as SipRequest).uriText, 'sip:frank@10.0.0.10:5070');
      assert.equal(forwarded.getAll('route')[0], edgeUri, 'the Path is the route of the branch');
    } finally {
      edge.close();
    }
  });
});
