// The console at scale: registers N stations (default 20,000) on a running
// CSMS and prints how long the console's pages take to show, in headless
// Chromium. A measurement that prints figures, not a test.
//
//   NODE_PATH=~/.cache/evproto/node-playwright/node_modules \
//   node examples/csms/tests/console/scale.mjs http://127.0.0.1:8081 "$KEY" [N]
//
// (tests/console.rs installs playwright-core there on its first run.)

import { createRequire } from 'node:module';

const { chromium } = createRequire(import.meta.url)('playwright-core');
const [base, key, nArg] = process.argv.slice(2);
const N = Number(nArg || 20000);
if (!base || !key) {
  console.error('usage: scale.mjs ADMIN_URL KEY [STATIONS]');
  process.exit(2);
}
const auth = { Authorization: 'Bearer ' + key, 'Content-Type': 'application/json' };

const have = (await (await fetch(base + '/api/stations?limit=1', { headers: auth })).json()).total;
const t0 = performance.now();
let next = 0;
let failed = 0;
async function worker() {
  while (next < N) {
    const i = next++;
    const r = await fetch(`${base}/api/stations/SCALE${i}`, { method: 'PUT', headers: auth, body: '{}' });
    if (!r.ok) failed++;
  }
}
// SCALE0..SCALE{N-1}: registered unless that many stations are there already
if (have < N) await Promise.all(Array.from({ length: 16 }, worker));
console.log(`stations: ${N} registered (${have} there before) in ${((performance.now() - t0) / 1000).toFixed(1)} s, ${failed} failed`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
await page.goto(base + '/?key=' + encodeURIComponent(key));
await page.waitForFunction(() => document.body.dataset.route);

async function timed(what, f) {
  const t = performance.now();
  await f();
  const ms = performance.now() - t;
  console.log(`${what}: ${ms.toFixed(0)} ms`);
  return ms;
}
const route = (h) => page.waitForFunction((x) => document.body.dataset.route === x, h, { timeout: 60_000 });
const go = (h) => page.evaluate((x) => (location.hash = x), h).then(() => route(h));

for (let round = 0; round < 3; round++) {
  await go('#/overview');
  await timed(`round ${round + 1} stations page (first 50 of ${N})`, () => go('#/stations'));
  await timed(`round ${round + 1} next page`, async () => {
    const before = await page.locator('.page-info').innerText();
    await page.getByRole('button', { name: 'Next →' }).click();
    await page.waitForFunction((b) => document.querySelector('.page-info').innerText !== b, before);
  });
  const needle = `SCALE${N - 1}`;
  await timed(`round ${round + 1} search "${needle}"`, async () => {
    await page.getByLabel('Search').fill(needle);
    await page.waitForFunction((n) => document.querySelector(`tr[data-station="${n}"]`) && /^1–1 of 1$/.test(document.querySelector('.page-info')?.innerText || ''), needle, { timeout: 60_000 });
  });
  await timed(`round ${round + 1} overview`, () => go('#/overview').then(() => page.locator('[data-tile="stations"]').waitFor()));
  await timed(`round ${round + 1} sessions page`, () => go('#/sessions'));
}
const rows = await page.evaluate(() => performance.getEntriesByType('resource').filter((e) => e.name.includes('/api/stations?')).map((e) => e.transferSize));
console.log(`station list answers: ${rows.length}, largest ${Math.max(...rows)} bytes`);
await browser.close();
