import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SipError, SipParseError } from '../../../src/sip/errors.ts';
import { DEFAULT_REJECT_LOG, RejectLog, rejectReasonOf, type RejectInfo, type RejectLogOptions } from '../../../src/sip/transport/rejects.ts';

/** A RejectLog on a clock the test moves. */
function harness(options: Partial<RejectLogOptions> = {}): { log: RejectLog; lines: RejectInfo[]; clock: { t: number } } {
  const clock = { t: 1_000_000 };
  const lines: RejectInfo[] = [];
  const log = new RejectLog((info) => lines.push(info), { ...DEFAULT_REJECT_LOG, ...options, now: () => clock.t });
  return { log, lines, clock };
}

test('reasons come from the error codes', () => {
  assert.equal(rejectReasonOf(new SipParseError('x', 513, 'SIP_TOO_LARGE')), 'too-large');
  assert.equal(rejectReasonOf(new SipParseError('x', 513, 'SIP_TOO_MANY_HEADERS')), 'too-many-headers');
  assert.equal(rejectReasonOf(new SipParseError('x', 513, 'SIP_HEADER_TOO_LONG')), 'header-too-long');
  assert.equal(rejectReasonOf(new SipParseError('x', 505, 'SIP_VERSION')), 'bad-version');
  assert.equal(rejectReasonOf(new SipParseError('x')), 'malformed');
  assert.equal(rejectReasonOf(new SipError('SIP_BAD_URI', 416, 'x')), 'malformed');
  assert.equal(rejectReasonOf(new TypeError('x')), 'malformed');
});

test('one line per source address per interval, the next one says how many were left out', () => {
  const { log, lines, clock } = harness({ intervalMs: 10_000 });
  log.report('malformed', 'UDP', '192.0.2.1', 5060, 'first');
  for (let i = 0; i < 5; i++) log.report('too-large', 'UDP', '192.0.2.1', 5000 + i, 'again');
  // another port of the same address is the same source; another address is not
  log.report('malformed', 'TCP', '192.0.2.2', 40000, 'other');
  assert.deepEqual(lines, [
    { reason: 'malformed', protocol: 'UDP', host: '192.0.2.1', port: 5060, detail: 'first', suppressed: 0 },
    { reason: 'malformed', protocol: 'TCP', host: '192.0.2.2', port: 40000, detail: 'other', suppressed: 0 },
  ]);
  clock.t += 9_999;
  log.report('malformed', 'UDP', '192.0.2.1', 5060, 'still quiet');
  assert.equal(lines.length, 2);
  clock.t += 1;
  log.report('header-too-long', 'UDP', '192.0.2.1', 5061, 'after the interval');
  assert.equal(lines.length, 3);
  assert.deepEqual(lines[2], { reason: 'header-too-long', protocol: 'UDP', host: '192.0.2.1', port: 5061, detail: 'after the interval', suppressed: 6 });
  // the count restarts
  clock.t += 10_000;
  log.report('malformed', 'UDP', '192.0.2.1', 5060, 'x');
  assert.equal(lines[3]!.suppressed, 0);
});

test('the sources remembered are bounded: a flood from many addresses evicts the one reported longest ago', () => {
  const { log, lines } = harness({ maxSources: 100, maxLinesPerInterval: 1e9 });
  for (let i = 0; i < 10_000; i++) log.report('malformed', 'UDP', `10.0.${i >> 8}.${i & 255}`, 5060, '');
  assert.equal(log.size, 100);
  assert.equal(lines.length, 10_000, 'each new address got its line');
  // the last 100 are remembered (still quiet), the first ones were forgotten (a line again)
  log.report('malformed', 'UDP', '10.0.39.15', 5060, ''); // i = 9999
  assert.equal(lines.length, 10_000);
  log.report('malformed', 'UDP', '10.0.0.0', 5060, '');
  assert.equal(lines.length, 10_001);
  assert.equal(log.size, 100);
});

test('a source reported again after its interval moves to the end and so outlives sources seen after it first', () => {
  const { log, lines, clock } = harness({ maxSources: 3 });
  for (const h of ['a', 'b', 'c']) log.report('malformed', 'UDP', h, 5060, '');
  clock.t += DEFAULT_REJECT_LOG.intervalMs;
  log.report('malformed', 'UDP', 'a', 5060, '');
  log.report('malformed', 'UDP', 'd', 5060, ''); // evicts b
  log.report('malformed', 'UDP', 'e', 5060, ''); // evicts c
  assert.equal(lines.length, 6);
  clock.t += 1;
  log.report('malformed', 'UDP', 'a', 5060, '');
  assert.equal(lines.length, 6, 'a is remembered: no line within its interval');
  log.report('malformed', 'UDP', 'b', 5060, '');
  assert.equal(lines.length, 7, 'b was forgotten: a line again');
  assert.equal(log.size, 3);
});

test('a global budget of lines per interval; sources held back by it report their count later', () => {
  const { log, lines, clock } = harness({ maxLinesPerInterval: 3 });
  for (let i = 0; i < 10; i++) log.report('malformed', 'UDP', `198.51.100.${i}`, 5060, '');
  log.report('malformed', 'UDP', '198.51.100.9', 5060, '');
  assert.equal(lines.length, 3);
  assert.deepEqual(lines.map((l) => l.host), ['198.51.100.0', '198.51.100.1', '198.51.100.2']);
  clock.t += DEFAULT_REJECT_LOG.intervalMs;
  log.report('malformed', 'UDP', '198.51.100.9', 5060, '');
  assert.equal(lines.length, 4);
  assert.equal(lines[3]!.host, '198.51.100.9');
  assert.equal(lines[3]!.suppressed, 2, 'the two held back');
});

test('a listener that throws does not escape', () => {
  const log = new RejectLog(() => { throw new Error('logger down'); }, { ...DEFAULT_REJECT_LOG });
  assert.doesNotThrow(() => log.report('malformed', 'UDP', '192.0.2.1', 5060, ''));
});
