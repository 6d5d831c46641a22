import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { startKamailio } from '../helpers/kamailio.ts';
import { freePort } from '../helpers/ports.ts';
import { killAll } from '../helpers/proc.ts';
import { runSipp } from '../helpers/sipp.ts';
import { startSipfleetNode } from './sipfleet-node.ts';

after(() => killAll());

// Kamailio's in-dialog routing is by Route (loose_route), so the caller must follow Record-Route.
const uacRecordRoute = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../scenarios/uac-rr.xml');

for (const transport of ['udp', 'tcp'] as const) {
  test(`sipp uac → Kamailio (record-routing, stateful) → sipfleet uas over ${transport.toUpperCase()}: 0 failed`, async () => {
    const port = await freePort('127.0.0.3');
    // Kamailio's two workers may relay a 180 and a 200 sent back to back out of order, which SIPp's scenario
    // would take as an unexpected message: ring for 50 ms as a phone would.
    const node = await startSipfleetNode(['--app', 'uas', '--listen', `127.0.0.3:${port}`, '--transport', transport, '--ring-ms', '50']);
    const kamailio = await startKamailio({ host: '127.0.0.2', transports: [transport], nextHop: `127.0.0.3:${port}`, nextHopTransport: transport });
    try {
      const r = await runSipp({ sf: uacRecordRoute, remote: `127.0.0.2:${kamailio.port}`, localIp: '127.0.0.1', transport, rate: 200, maxCalls: 1000, callLimit: 500, timeoutSec: 40 });
      const detail = `successful=${r.successful} failed=${r.failed}\n${r.stdout.slice(-1500)}\nkamailio: ${kamailio.process.stderr.slice(-1500)}`;
      assert.equal(r.failed, 0, detail);
      assert.equal(r.successful, 1000, detail);
    } finally {
      await kamailio.stop();
      await node.stop();
    }
  });
}

test('sipsak OPTIONS to a sipfleet node gets 200', async () => {
  // sipsak 0.9.8 cuts the last digit of a five-digit port in its To/Request-URI, so use a four-digit one.
  let port = 0;
  for (let p = 5070; p < 9990 && port === 0; p += 7) {
    try {
      if ((await freePort('127.0.0.4')) > 0) {
        const probe = await import('node:dgram');
        await new Promise<void>((resolve, reject) => {
          const s = probe.createSocket('udp4');
          s.once('error', reject);
          s.bind(p, '127.0.0.4', () => s.close(() => resolve()));
        });
        port = p;
      }
    } catch {
      // taken: try the next one
    }
  }
  assert.ok(port > 0, 'a free four-digit port');
  const node = await startSipfleetNode(['--app', 'uas', '--listen', `127.0.0.4:${port}`]);
  try {
    const r = spawnSync('sipsak', ['-v', '-s', `sip:sipfleet@127.0.0.4:${port}`], { encoding: 'utf8', timeout: 15_000 });
    assert.equal(r.status, 0, `sipsak exit ${r.status}: ${r.stdout} ${r.stderr}`);
    assert.match(r.stdout, /SIP\/2\.0 200 OK/);
  } finally {
    await node.stop();
  }
});
