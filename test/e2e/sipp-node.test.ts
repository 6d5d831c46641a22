import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { freePort } from '../helpers/ports.ts';
import { killAll } from '../helpers/proc.ts';
import { runSipp, SCENARIO_UAC_RR, SCENARIO_UAS_RR, startSippUas, type SippResult } from '../helpers/sipp.ts';
import { startSipfleetNode } from './sipfleet-node.ts';

// The load: 2,000 calls at 200 calls/s; bounded by SIPp's -timeout.
const CALLS = 2000;
const RATE = 200;

function assertClean(r: SippResult, what: string): void {
  const detail = `${what}: successful=${r.successful} failed=${r.failed} exit=${r.exitCode}\n${r.stdout.slice(-1500)}`;
  assert.equal(r.failed, 0, detail);
  assert.equal(r.successful, CALLS, detail);
  assert.equal(r.exitCode, 0, detail);
}

after(() => killAll());

for (const transport of ['udp', 'tcp'] as const) {
  describe(`SIPp against sipfleet nodes over ${transport.toUpperCase()}`, () => {
    test(`sipp uac → sipfleet uas: ${CALLS} calls at ${RATE}/s, 0 failed`, async () => {
      const port = await freePort('127.0.0.2');
      const node = await startSipfleetNode(['--app', 'uas', '--listen', `127.0.0.2:${port}`, '--transport', transport]);
      try {
        const r = await runSipp({ sn: 'uac', remote: `127.0.0.2:${port}`, localIp: '127.0.0.1', transport, rate: RATE, maxCalls: CALLS, callLimit: 1000, timeoutSec: 60 });
        assertClean(r, 'uac → uas');
      } finally {
        await node.stop();
      }
    });

    test(`sipp uac → sipfleet proxy → sipp uas: ${CALLS} calls at ${RATE}/s, 0 failed`, async () => {
      const uas = await startSippUas({ localIp: '127.0.0.3', transport });
      const port = await freePort('127.0.0.2');
      const node = await startSipfleetNode(['--app', 'proxy', '--listen', `127.0.0.2:${port}`, '--route-to', `127.0.0.3:${uas.localPort}`, '--transport', transport]);
      try {
        const r = await runSipp({ sn: 'uac', remote: `127.0.0.2:${port}`, localIp: '127.0.0.1', transport, rate: RATE, maxCalls: CALLS, callLimit: 1000, timeoutSec: 60 });
        assertClean(r, 'uac → proxy → uas');
      } finally {
        await node.stop();
        await uas.stop({ graceful: false });
      }
    });
  });
}

test('Record-Route: ACK and BYE follow the route set through the proxy (SIPp -sf scenarios)', async () => {
  const uas = await startSippUas({ localIp: '127.0.0.3', transport: 'udp', sf: SCENARIO_UAS_RR });
  const port = await freePort('127.0.0.2');
  const node = await startSipfleetNode(['--app', 'proxy', '--listen', `127.0.0.2:${port}`, '--route-to', `127.0.0.3:${uas.localPort}`]);
  try {
    const r = await runSipp({ sf: SCENARIO_UAC_RR, remote: `127.0.0.2:${port}`, localIp: '127.0.0.1', rate: 100, maxCalls: 500, timeoutSec: 40 });
    assert.equal(r.failed, 0, r.stdout.slice(-1500));
    assert.equal(r.successful, 500);
  } finally {
    await node.stop();
    await uas.stop({ graceful: false });
  }
});
