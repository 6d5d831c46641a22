import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FlowTokens } from '../../src/balancer/flow-token.ts';

describe('flow tokens', () => {
  const tokens = new FlowTokens('flow-token-test-secret');

  test('every token decodes to its connection, including those whose MAC has a "-" or "_" (base64url)', () => {
    let withDash = 0;
    let withUnderscore = 0;
    for (let port = 40_000; port < 42_000; port++) {
      for (const [protocol, host] of [['WSS', '127.0.0.1'], ['WS', '::1'], ['TLS', '2001:db8::7']] as const) {
        const t = tokens.encode(protocol, host, port);
        const mac = t.slice(t.length - 12);
        if (mac.includes('-')) withDash++;
        if (mac.includes('_')) withUnderscore++;
        assert.deepEqual(tokens.decode(t), { protocol, host, port }, t);
      }
    }
    // About 1 token in 6 has a '-' in its MAC: the case that was lost before.
    assert.ok(withDash > 300, `${withDash} tokens with '-' in the MAC`);
    assert.ok(withUnderscore > 300, `${withUnderscore} tokens with '_' in the MAC`);
  });

  test('a token signed with another secret, tampered with or cut short does not decode', () => {
    const t = tokens.encode('WSS', '127.0.0.1', 40_123);
    assert.equal(new FlowTokens('another secret').decode(t), null);
    assert.equal(tokens.decode(t.replace('40123', '40124')), null, 'another port');
    assert.equal(tokens.decode(t.slice(0, -1)), null, 'MAC cut short');
    assert.equal(tokens.decode(t + 'A'), null, 'a character more');
    assert.equal(tokens.decode(t.slice(0, -13) + '_' + t.slice(-12)), null, 'no "-" before the MAC');
    assert.equal(tokens.decode('sf-'), null);
    assert.equal(tokens.decode('alice'), null);
    assert.equal(tokens.decode(null), null);
    assert.equal(FlowTokens.looksLike(t), true);
    assert.equal(FlowTokens.looksLike('alice'), false);
  });
});
