import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { startKamailio } from '../helpers/kamailio.ts';
import { freePort, freePortInRange } from '../helpers/ports.ts';
import { sipsakOptions } from '../helpers/sipsak.ts';
import { killAll } from '../helpers/proc.ts';
import { runSipp, SCENARIO_UAC_RR } from '../helpers/sipp.ts';
import { startSipfleetNode } from './sipfleet-node.ts';

after(() => killAll());


for (const transport of ['udp', 'tcp'] as const) {
  test(`sipp uac → Kamailio (record-routing, stateful) → sipfleet uas over ${transport.toUpperCase()}: 0 failed`, async () => {
    const port = await freePort('127.0.0.3');
    // Kamailio's two workers may relay a 180 and a 200 sent back to back out of order, which SIPp's scenario
    // would take as an unexpected message: ring for 50 ms as a phone would.
    const node = await startSipfleetNode(['--app', 'uas', '--listen', `127.0.0.3:${port}`, '--transport', transport, '--ring-ms', '50']);
    const kamailio = await startKamailio({ host: '127.0.0.2', transports: [transport], nextHop: `127.0.0.3:${port}`, nextHopTransport: transport });
    try {
      // Kamailio's in-dialog routing is by Route (loose_route), so the caller must follow Record-Route.
      const r = await runSipp({ sf: SCENARIO_UAC_RR, remote: `127.0.0.2:${kamailio.port}`, localIp: '127.0.0.1', transport, rate: 200, maxCalls: 1000, callLimit: 500, timeoutSec: 40 });
      const detail = `successful=${r.successful} failed=${r.failed}\n${r.stdout.slice(-1500)}\nkamailio: ${kamailio.process.stderr.slice(-1500)}`;
      assert.equal(r.failed, 0, detail);
      assert.equal(r.successful, 1000, detail);
    } finally {
      await kamailio.stop();
      await node.stop();
    }
  });
}

test('sipsak OPTIONS to a sipfleet node gets 200 (UDP and TCP)', async () => {
  // sipsak 0.9.8 cuts the last digit of a five-digit port in its Request-URI: a four-digit one.
  const port = await freePortInRange('127.0.0.4', 5060, 9999);
  const node = await startSipfleetNode(['--app', 'uas', '--listen', `127.0.0.4:${port}`, '--transport', 'udp,tcp']);
  try {
    for (const transport of ['udp', 'tcp'] as const) {
      const r = await sipsakOptions(`sip:sipfleet@127.0.0.4:${port}`, { transport });
      assert.equal(r.exitCode, 0, `sipsak over ${transport}: ${r.stdout} ${r.stderr}`);
      assert.equal(r.status, 200);
    }
  } finally {
    await node.stop();
  }
});
