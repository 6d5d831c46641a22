import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AppRouter, RouterConfigError } from '../../../src/server/app/router.ts';
import { parseMessage } from '../../../src/sip/message/parser.ts';
import type { SipRequest } from '../../../src/sip/message/message.ts';

function req(method: string, uri: string, extra = ''): SipRequest {
  return parseMessage(Buffer.from(`${method} ${uri} SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n` +
    `To: <${uri}>\r\nCall-ID: c\r\nCSeq: 1 ${method}\r\n${extra}Content-Length: 0\r\n\r\n`)) as SipRequest;
}

test('the first matching rule picks the app; otherwise the default', () => {
  const r = new AppRouter([
    { app: 'registrar', method: 'register' },
    { app: 'conference', uri: '^sip:conf-' },
    { app: 'vip', header: { name: 'X-Tier', pattern: '^gold$' } },
  ], 'proxy', ['proxy', 'registrar', 'conference', 'vip']);
  assert.equal(r.route(req('REGISTER', 'sip:example.com')), 'registrar');
  assert.equal(r.route(req('INVITE', 'sip:conf-42@example.com')), 'conference');
  assert.equal(r.route(req('INVITE', 'sip:bob@example.com', 'X-Tier: gold\r\n')), 'vip');
  assert.equal(r.route(req('INVITE', 'sip:bob@example.com', 'X-Tier: silver\r\n')), 'proxy');
});

test('a rule naming an unknown app or a bad pattern is a config error naming its key', () => {
  assert.throws(() => new AppRouter([{ app: 'nope' }], 'proxy', ['proxy']), (e: unknown) => e instanceof RouterConfigError && e.key === 'router.rules[0].app');
  assert.throws(() => new AppRouter([{ app: 'proxy', uri: '(' }], 'proxy', ['proxy']), (e: unknown) => e instanceof RouterConfigError && e.key === 'router.rules[0].uri');
});
