import assert from 'node:assert/strict';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import { startCluster, waitUntil } from '../e2e/sipfleet-cluster.ts';
import { freePort } from '../helpers/ports.ts';
import { killAll } from '../helpers/proc.ts';
import { startSipp, startSippUas, SCENARIO_UAC_RR, SCENARIO_UAS_RR } from '../helpers/sipp.ts';

after(() => killAll());

const CHROMIUM = '/usr/bin/chromium';
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** Kept after the run (CI artefact; ignored by git). */
const ARTEFACTS = path.join(root, 'test-artifacts');

test('dashboard in headless Chromium: a killed node\'s tile turns dead and the survivors\' calls rise', { skip: !existsSync(CHROMIUM) && 'Debian chromium not installed (the pretest step installs it)' }, async () => {
  const uas = await startSippUas({ sf: SCENARIO_UAS_RR, localIp: '127.0.0.10' });
  const cluster = await startCluster(['--nodes', '3', '--app', 'proxy', '--route-to', `127.0.0.10:${uas.localPort}`, '--restart-delay-ms', '60000']);
  let browser: Browser | null = null;
  try {
    // Calls of 6 s at 30/s: ~180 in progress, spread over the three nodes.
    const calls = startSipp({ sf: SCENARIO_UAC_RR, remote: cluster.sip, localPort: await freePort('127.0.0.1'), rate: 30, maxCalls: 600, callLimit: 400, timeoutSec: 60, extraArgs: ['-d', '6000'] });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    const page = await browser.newPage({ viewport: { width: 1100, height: 640 } });
    await page.goto(`${cluster.adminUrl}/`);
    const tile = (id: string) => page.locator(`.tile[data-node="${id}"]`);
    for (const id of ['node-1', 'node-2', 'node-3']) await tile(id).and(page.locator('[data-state="up"]')).waitFor({ timeout: 10_000 });
    // Wait for calls to build up on every node (as the page shows them).
    const shownCalls = async (id: string): Promise<number> => Number(await tile(id).getAttribute('data-calls'));
    await waitUntil('calls on every tile', async () => (await Promise.all(['node-1', 'node-2', 'node-3'].map(shownCalls))).every((c) => c >= 20), 20_000);
    const survivorsBefore = (await shownCalls('node-1')) + (await shownCalls('node-3'));

    const victim = await cluster.node('node-2');
    const killedAt = Date.now();
    process.kill(victim.pid, 'SIGKILL');
    await tile('node-2').and(page.locator('[data-state="dead"]')).waitFor({ timeout: 5_000 });
    const shownDeadAfter = Date.now() - killedAt;
    console.log(`# the page showed node-2 dead ${shownDeadAfter} ms after SIGKILL`);
    assert.match((await tile('node-2').locator('.state').textContent()) ?? '', /dead/);
    // Its calls move: their next messages (BYEs) and the new calls go to the survivors, whose counts rise.
    await waitUntil('survivors\' calls rise on the page', async () => (await shownCalls('node-1')) + (await shownCalls('node-3')) > survivorsBefore, 10_000);
    assert.equal(await tile('node-1').getAttribute('data-state'), 'up');
    assert.equal(await tile('node-3').getAttribute('data-state'), 'up');
    assert.match((await page.locator('#summary').textContent()) ?? '', /^2\/3 nodes up/);
    // The charts are drawn from the feed's samples: calls/s is shown as a number too.
    await waitUntil('calls/s shown', async () => Number(await page.locator('#cps').textContent()) > 0, 5_000);

    mkdirSync(ARTEFACTS, { recursive: true });
    const shot = path.join(ARTEFACTS, 'dashboard-node-killed.png');
    await page.screenshot({ path: shot, fullPage: true });
    assert.ok(statSync(shot).size > 10_000, 'a real screenshot');
    console.log(`# screenshot: ${shot}`);
    await calls.stop({ graceful: false });
  } finally {
    await browser?.close();
    await cluster.stop();
    await uas.stop({ graceful: false });
  }
});
