// The operator console driven as a person would, in headless Chromium
// (Debian's, through playwright-core): tests/console.rs starts the CSMS,
// runs this script and starts the simulated station when asked.
//
// Environment: CONSOLE_URL (the admin listener), CONSOLE_KEY (the API key),
// CONSOLE_SCREENS (where screenshots go), CONSOLE_STATION (the identity
// the simulated station will use).
//
// Protocol on stdout, one line each: `STEP name` as each step starts,
// `SCREEN path` per screenshot, `NEED station <identity> <password>` when
// the station has been registered through the form and the simulator
// should start with that password, `NEED fleet` once the default tariff is
// made (the test then makes a fleet whose driver signed up in the app, with
// a priced session last month), `INVOICED <session>` per session on the
// invoice the console issued, `NEED stream` when a 2.1 station streaming
// its power (STRM0) should connect. The test also pays a session by card (its
// driver's RFID card, the card saved at localstripe) for the refund step. Exit 0 when every step passed; 1 with
// the failing step and a screenshot of the page otherwise.

import { createRequire } from 'node:module';
import path from 'node:path';
import fs from 'node:fs';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

const BASE = process.env.CONSOLE_URL;
const KEY = process.env.CONSOLE_KEY;
const SCREENS = process.env.CONSOLE_SCREENS;
const STATION = process.env.CONSOLE_STATION || 'LAB0';
const FLEET = process.env.CONSOLE_FLEET || 'Lab fleet';
const FLEET_DRIVER = process.env.CONSOLE_FLEET_DRIVER || 'pool-driver@lab-fleet.example';
const CARD_TOKEN = process.env.CONSOLE_CARD_TOKEN || 'CARDDRIVER01';
const TOKEN = 'LABTOKEN';
const LONG = 90_000;

fs.mkdirSync(SCREENS, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const context = await browser.newContext({ viewport: { width: 1400, height: 1000 }, locale: 'en-GB', timezoneId: 'Europe/Amsterdam' });
const page = await context.newPage();
page.setDefaultTimeout(20_000);

// what must never happen on any page: script errors, policy violations
const problems = [];
page.on('pageerror', (e) => problems.push('script error: ' + e.message));
page.on('console', (m) => {
  if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) problems.push('CSP: ' + m.text());
});
await page.addInitScript(() => {
  document.addEventListener('securitypolicyviolation', (e) => console.error('Refused to load: CSP violation of ' + e.violatedDirective + ' by ' + e.blockedURI));
});

let current = 'start';
function step(name) {
  current = name;
  console.log('STEP ' + name);
}
async function shot(name) {
  const file = path.join(SCREENS, name + '.png');
  await page.screenshot({ path: file, fullPage: true });
  console.log('SCREEN ' + file);
}
function check(cond, what) {
  if (!cond) throw new Error(what);
}
const view = () => page.locator('#view');
/** Opens a page by its address and waits until it has loaded. */
async function go(hash) {
  await page.evaluate((h) => (location.hash = h), hash);
  await page.waitForFunction((h) => document.body.dataset.route === h, hash);
}
async function toastSays(text) {
  await page.locator('#toasts .toast', { hasText: text }).first().waitFor();
}

try {
  step('login page, a wrong key refused in words');
  await page.goto(BASE + '/');
  await page.getByLabel('API key').fill('not-the-key-' + Date.now());
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#login-error', { hasText: 'That key is not valid' }).waitFor();
  check(await page.locator('#app').isHidden(), 'the console opened with a wrong key');
  await shot('01-login-wrong-key');

  step('log in with the key');
  await page.getByLabel('API key').fill(KEY);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#view h1', { hasText: 'Overview' }).waitFor();
  await page.locator('[data-tile="stations"]').waitFor();
  check((await page.evaluate(() => sessionStorage.getItem('csms-key'))) === KEY, 'the key is not kept in session storage');
  check((await page.evaluate(() => localStorage.length)) === 0, 'something went to localStorage');
  await page.locator('#live.live').waitFor();

  step('create a token with a prepaid wallet through the form');
  await go('#/tokens');
  await page.getByRole('button', { name: '+ New token' }).click();
  const tokenDialog = page.locator('dialog[open]');
  await tokenDialog.getByLabel('Token (idTag / idToken)').fill(TOKEN);
  await tokenDialog.getByLabel('Type').selectOption('ISO14443');
  await tokenDialog.getByLabel('Status').selectOption('Accepted');
  if (await tokenDialog.getByLabel('Group').isEnabled()) await tokenDialog.getByLabel('Group').fill('LAB-FLEET');
  await tokenDialog.getByLabel('Balance').fill('50');
  await tokenDialog.getByRole('button', { name: 'Create' }).click();
  await toastSays(`Token ${TOKEN} created.`);
  const tokenRow = page.locator(`tr[data-token="${TOKEN}"]`);
  await tokenRow.waitFor();
  await tokenRow.getByText('Accepted').waitFor();
  await tokenRow.locator('td', { hasText: '50.00' }).waitFor();
  await shot('02-tokens');

  step('create the default tariff in the editor, with a live preview');
  await go('#/tariffs');
  await page.getByRole('link', { name: '+ New tariff' }).click();
  await page.locator('#tariff-form').waitFor();
  await page.getByLabel('Tariff id').fill('default');
  await page.getByLabel('Currency (ISO 4217)').fill('EUR');
  const comp = page.locator('#tariff-form .component').first();
  await comp.getByLabel('Component').selectOption('ENERGY');
  await comp.getByLabel('Price excl. VAT').fill('0.40');
  await comp.getByLabel('VAT %').fill('21');
  await page.getByRole('button', { name: '+ Add price component' }).click();
  const flat = page.locator('#tariff-form .component').nth(1);
  await flat.getByLabel('Component').selectOption('FLAT');
  await flat.getByLabel('Price excl. VAT').fill('0.50');
  await flat.getByLabel('VAT %').fill('21');
  await page.getByLabel('Energy (kWh)', { exact: true }).fill('10');
  // 10 kWh × 0.40 + 0.50 = 4.50 excl. VAT; 5.445 → €5.45 incl. 21 % VAT
  // the preview follows the form as it is edited (debounced)
  await page
    .waitForFunction(() => /5[.,]4[45]/.test(document.querySelector('#tariff-preview')?.innerText || ''), null, { timeout: 10_000 })
    .catch(async () => check(false, 'preview of 10 kWh at 0.40 + 0.50 flat incl. 21 % VAT: ' + (await page.locator('#tariff-preview').innerText())));
  const previewText = await page.locator('#tariff-preview').innerText();
  check(/4[.,]50/.test(previewText), 'preview excl. VAT: ' + previewText);
  check(/10 kWh/.test(previewText), 'preview for the sample energy: ' + previewText);
  await shot('03-tariff-editor');
  await page.getByRole('button', { name: 'Save tariff' }).click();
  await toastSays('Tariff default saved.');
  await page.waitForFunction(() => document.body.dataset.route === '#/tariffs/default');
  await page.getByRole('link', { name: 'Back to tariffs' }).click();
  await page.waitForFunction(() => document.body.dataset.route === '#/tariffs');
  await page.locator('tr[data-tariff="default"]', { hasText: '0.40' }).waitFor();
  await shot('04-tariffs');
  console.log('NEED fleet');

  step('register the station with a password through the form');
  await go('#/stations');
  await page.getByRole('button', { name: '+ Register station' }).click();
  const sd = page.locator('dialog[open]');
  await sd.getByLabel('Identity').fill(STATION);
  await sd.getByRole('button', { name: 'Generate' }).click();
  const password = await sd.getByLabel('Password').inputValue();
  check(password.length >= 16 && password.length <= 40, 'generated password of 16 to 40 characters: ' + password.length);
  const profile = sd.getByLabel('Security profile');
  if (await profile.isEnabled()) await profile.selectOption('1');
  const registration = sd.getByLabel('Registration');
  if (await registration.isEnabled()) await registration.selectOption('Accepted');
  await sd.getByLabel('Name').fill('Lab car park');
  await sd.getByLabel('City').fill('Delft');
  await sd.getByLabel('Country (ISO 3166 alpha-3)').fill('NLD');
  await sd.getByLabel('Latitude').fill('52.0116');
  await sd.getByLabel('Longitude').fill('4.3571');
  await shot('05-station-form');
  await sd.getByRole('button', { name: 'Register' }).click();
  // the console opens the new station's page
  await page.locator('#view h1', { hasText: STATION }).waitFor();
  await page.locator('#view h1 .pill', { hasText: 'Offline' }).waitFor();
  await page.locator('.facts dd', { hasText: 'set' }).first().waitFor();
  console.log(`NEED station ${STATION} ${password}`);

  step('watch the station boot and charge (live updates, no reload)');
  await page.locator('#view h1 .pill', { hasText: 'Online' }).waitFor({ timeout: LONG });
  await page.locator('#view [data-state="In use"]').first().waitFor({ timeout: LONG });
  await page.locator('#view tr[data-status="Active"]').first().waitFor({ timeout: LONG });
  // a few meter values, so that the power chart has a line
  await page.waitForFunction(() => /Now: [1-9]/.test(document.querySelector('.big-number')?.textContent || ''), null, { timeout: LONG });
  await page.locator('#chart-power .uplot').waitFor({ timeout: LONG });
  await shot('06-station-charging');

  step('overview counts the station and its session');
  await go('#/overview');
  // the lab station online, and the fleet's (registered by the test, online while its client lives)
  await page.locator('[data-tile="stations"] .value', { hasText: /^[12] \/ 2$/ }).waitFor({ timeout: LONG });
  await page.locator('[data-tile="sessions"] .value', { hasText: /^[1-9]/ }).waitFor({ timeout: LONG });
  await shot('07-overview-live');
  // a 2.1 station that streams its power, plotted later (after the counts above)
  console.log('NEED stream');

  step('stations list: search, normalized connector states');
  await go('#/stations');
  await page.getByLabel('Search').fill(STATION.slice(0, 3).toLowerCase());
  const row = page.locator(`tr[data-station="${STATION}"]`);
  await row.waitFor();
  await row.locator('.pill', { hasText: 'In use' }).first().waitFor({ timeout: LONG });
  await row.locator('.pill', { hasText: 'Online' }).waitFor();
  const raw = await row.locator('.pill', { hasText: 'In use' }).first().getAttribute('title');
  check(/Occupied|Charging|Preparing|Suspended/.test(raw || ''), 'the raw connector state on hover: ' + raw);
  await shot('08-stations');

  step('force-close the active session with a reason');
  await go('#/sessions');
  await page.getByLabel('Station').fill(STATION);
  const active = page.locator('tr[data-status="Active"]').first();
  await active.waitFor({ timeout: LONG });
  const sessionId = await active.getAttribute('data-session');
  await active.getByRole('button', { name: /Force-close/ }).click();
  const cd = page.locator('dialog[open]');
  await cd.getByLabel('Reason (kept with the session)').fill('stuck after a power cut (console test)');
  await cd.getByRole('button', { name: 'Force close' }).click();
  await toastSays(`Session ${sessionId} closed.`);
  await page.locator(`tr[data-session="${sessionId}"][data-status="Completed"]`).waitFor({ timeout: LONG });
  await shot('09-sessions-closed');

  step('the CDR and the payment of the closed session');
  let paid = '';
  const deadline = Date.now() + LONG;
  while (Date.now() < deadline) {
    await page.locator(`tr[data-session="${sessionId}"] button.link`).click();
    const dlg = page.locator('dialog[open]');
    await dlg.locator('#session-cdr dl, #session-cdr p').first().waitFor();
    await dlg.locator('#session-payment dl, #session-payment p, #session-payment [data-payment]').first().waitFor();
    const cdr = await dlg.locator('#session-cdr').innerText();
    paid = (await dlg.locator('#session-payment [data-payment]').getAttribute('data-payment').catch(() => null)) || '';
    if (/Cost incl\. VAT/.test(cdr) && paid === 'Captured') {
      check(/operator/.test(await dlg.innerText()), 'the session does not say the operator closed it');
      await shot('10-session-cdr-payment');
      await dlg.getByRole('button', { name: 'Close' }).click();
      break;
    }
    await dlg.getByRole('button', { name: 'Close' }).click();
    await page.waitForTimeout(1000);
  }
  check(paid === 'Captured', 'the payment of the closed session was not captured: ' + paid);
  await go('#/billing');
  await page.locator(`tr[data-cdr][data-session="${sessionId}"]`).waitFor({ timeout: LONG });
  if (await page.locator('tr[data-payment]').count()) await page.locator(`tr[data-payment="Captured"][data-session="${sessionId}"]`).waitFor({ timeout: LONG });
  await shot('11-billing');

  step("drivers: the app's driver, their fleet");
  await go('#/drivers');
  await page.getByLabel('Search').fill(FLEET_DRIVER.split('@')[0]);
  const driverRow = page.locator('tr[data-driver]', { hasText: FLEET_DRIVER });
  await driverRow.waitFor({ timeout: LONG });
  // the search (debounced) leaves the one driver of the two
  await page.waitForFunction(() => document.querySelectorAll('tr[data-driver]').length === 1, null, { timeout: 10_000 }).catch(() => check(false, 'the search did not leave one driver'));
  await driverRow.getByRole('link', { name: FLEET_DRIVER }).click();
  await page.locator('#view h1', { hasText: FLEET_DRIVER }).waitFor();
  await page.waitForFunction(() => document.body.dataset.route?.startsWith('#/drivers/'));
  check(/manager/.test(await view().locator('.facts').first().innerText()), 'the driver page shows their fleet role');
  await shot('12-driver');

  step("fleets: the fleet's member and card; issue last month's invoice");
  await view().getByRole('link', { name: /^flt_/ }).click();
  await page.locator('#view h1', { hasText: FLEET }).waitFor();
  await page.locator('tr[data-member]', { hasText: FLEET_DRIVER }).waitFor();
  await page.locator('tr[data-token="FLEETCARD01"]').waitFor();
  const fleetHash = await page.evaluate(() => location.hash);
  check((await page.getByLabel('Month').inputValue()).match(/^\d{4}-\d{2}$/), 'the month defaults to last month');
  await page.getByRole('button', { name: 'Issue invoice' }).click();
  await toastSays('Invoice INV-');
  const invRow = page.locator('#fleet-documents tr[data-kind="invoice"]').first();
  await invRow.waitFor();
  const invoice = await invRow.getAttribute('data-document');
  await shot('13-fleet-invoiced');
  // the month is invoiced once: the second ask is refused in words
  await page.getByRole('button', { name: 'Issue invoice' }).click();
  await page.locator('#invoice-form .error', { hasText: 'HTTP 409' }).waitFor();

  step('the invoice: lines, totals per VAT rate, downloads');
  await invRow.getByRole('link', { name: invoice }).click();
  await page.waitForFunction((n) => document.body.dataset.route === '#/invoices/' + n, invoice);
  const total = Number(await page.locator('#document-total').getAttribute('data-total'));
  check(total > 0, 'the invoice total: ' + total);
  const lines = await page.locator('tr[data-session]').evaluateAll((rows) => rows.map((r) => r.dataset.session));
  check(lines.length >= 1, 'the invoice has lines');
  for (const l of new Set(lines)) console.log('INVOICED ' + l);
  await page.locator('tr[data-rate]').first().waitFor();
  const [csv] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download CSV' }).click()]);
  check(csv.suggestedFilename() === invoice + '.csv', 'CSV file name: ' + csv.suggestedFilename());
  const csvText = fs.readFileSync(await csv.path(), 'utf8');
  check(csvText.includes(lines[0]), 'the CSV has the session: ' + csvText.slice(0, 300));
  const [pdf] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download PDF' }).click()]);
  check(fs.readFileSync(await pdf.path()).subarray(0, 5).toString() === '%PDF-', 'the PDF download is a PDF');
  await shot('14-invoice');

  step('credit a disputed session of the invoice');
  await page.getByRole('button', { name: 'Issue credit note…' }).click();
  const cn = page.locator('dialog[open].modal');
  await cn.getByRole('checkbox').first().check();
  await cn.getByLabel('Reason (printed on the credit note)').fill('the driver disputes the session (console test)');
  await cn.getByRole('button', { name: 'Issue credit note' }).click();
  await page.locator('dialog.confirm').getByRole('button', { name: 'Issue credit note' }).click();
  await toastSays('Credit note CN-');
  await page.waitForFunction(() => /^#\/invoices\/CN-/.test(document.body.dataset.route || ''));
  check(Number(await page.locator('#document-total').getAttribute('data-total')) === -total, 'the credit note turns the whole invoice');
  await shot('15-credit-note');
  await go('#/invoices');
  await page.locator(`tr[data-document="${invoice}"]`).waitFor();
  await page.locator('tr[data-kind="credit_note"]').first().waitFor();
  await go(fleetHash);
  await page.locator('#fleet-documents tr[data-kind="credit_note"]').waitFor();

  step("a card-paid session: the gateway's status, a partial refund");
  await go('#/sessions');
  await page.getByLabel('Station').fill('FLEET16');
  const cardRow = page.locator('tr[data-session]', { hasText: CARD_TOKEN });
  await cardRow.waitFor({ timeout: LONG });
  await cardRow.locator('button.link').click();
  const sd2 = page.locator('dialog[open].modal').first();
  const cardPay = sd2.locator('#session-payment [data-provider="card"][data-payment="Captured"]');
  await cardPay.waitFor({ timeout: LONG });
  const capturedMinor = Number(await cardPay.locator('[data-captured]').getAttribute('data-captured'));
  check(capturedMinor > 50, 'captured on the card: ' + capturedMinor);
  check(/Gateway says\s+succeeded/.test(await cardPay.innerText()), "the gateway's status: " + (await cardPay.innerText()));
  await sd2.getByRole('button', { name: 'Refund…' }).click();
  const rd = page.locator('dialog[open].modal').last();
  await rd.getByLabel('Amount (EUR)').fill('0.50');
  if (await rd.getByLabel('Reason').count()) await rd.getByLabel('Reason').fill('goodwill (console test)');
  await rd.getByRole('button', { name: 'Refund', exact: true }).click();
  await page.locator('dialog.confirm').getByRole('button', { name: 'Refund', exact: true }).click();
  await toastSays('Refund of');
  await sd2.locator('#session-payment [data-refunded="50"]').waitFor({ timeout: LONG });
  await sd2.locator('#session-payment tr[data-refund]').first().waitFor();
  const refundStatus = await sd2.locator('#session-payment tr[data-refund]').first().getAttribute('data-status');
  check(refundStatus === 'Succeeded' || refundStatus === 'Pending', 'the refund: ' + refundStatus);
  await shot('15b-card-refund');
  await sd2.getByRole('button', { name: 'Close' }).click();

  step('open the station page with its generated OCPP forms');
  await go('#/stations/' + encodeURIComponent(STATION));
  await page.locator('#ocpp-action').waitFor();
  await page.locator('#ocpp-action').selectOption('Reset');
  const version = await page.locator('.facts dt:text-is("OCPP version") + dd').innerText();
  step('every command of the station\'s version has a form generated from its schema');
  const actionNames = await page.locator('#ocpp-action option').allInnerTexts();
  check(actionNames.length >= 20, 'CSMS-initiated actions listed: ' + actionNames.length);
  for (const a of actionNames) {
    await page.locator('#ocpp-action').selectOption(a);
    // the raw view of the untouched form is JSON (required scalars may still be empty)
    await page.getByLabel('Edit as raw JSON').check();
    const text = await page.getByLabel('Request as JSON').inputValue();
    try {
      JSON.parse(text);
    } catch (e) {
      check(false, `${a}: the form's JSON does not parse: ${text}`);
    }
    await page.getByLabel('Edit as raw JSON').uncheck();
  }
  check(problems.length === 0, 'problems while generating the forms:\n' + problems.join('\n'));
  console.log(`forms generated for ${actionNames.length} actions`);
  await page.locator('#ocpp-action').selectOption('Reset');

  step('a payload the schema refuses is a reason, not a crash');
  await page.getByLabel('Edit as raw JSON').check();
  await page.getByLabel('Request as JSON').fill('{"type": "Sideways"}');
  await page.locator('#ocpp-send').click();
  await page.locator('#ocpp-answer .answer.failed[data-status="422"]').waitFor({ timeout: LONG });
  check(/does not fit the schema/.test(await page.locator('#ocpp-answer').innerText()), 'the 422 in words');
  await page.getByLabel('Edit as raw JSON').uncheck();

  step('a nested command (arrays of objects) filled in the generated form');
  if (version !== '1.6') {
    await page.locator('#ocpp-action').selectOption('GetVariables');
    const at = (path) => page.locator(`#ocpp-form [data-path="${path}"]`);
    await at('getVariableData.0.component.name').fill('OCPPCommCtrlr');
    await at('getVariableData.0.variable.name').fill('HeartbeatInterval');
    await page.getByRole('button', { name: /Add getVariableData/ }).click();
    await at('getVariableData.1.component.name').fill('DeviceDataCtrlr');
    await at('getVariableData.1.variable.name').fill('ItemsPerMessage');
    await page.locator('#ocpp-send').click();
    const got = page.locator('#ocpp-answer .answer[data-outcome="answered"]');
    await got.waitFor({ timeout: LONG });
    const text = await got.innerText();
    check(/HeartbeatInterval/.test(text) && /ItemsPerMessage/.test(text), 'GetVariables answer for both variables: ' + text);
    await shot('16-station-getvariables');
    await page.locator('#ocpp-action').selectOption('Reset');
  }

  step('send Reset from the generated form and see the answer');
  const form = page.locator('#ocpp-form');
  // 1.6: type Hard/Soft; 2.x: type Immediate/OnIdle (both required, as a select)
  const type = form.locator('select[name="type"]');
  await type.waitFor();
  const options = await type.locator('option').allInnerTexts();
  check(options.includes(version === '1.6' ? 'Soft' : 'OnIdle'), `Reset's type options for ${version}: ${options}`);
  await type.selectOption(version === '1.6' ? 'Soft' : 'OnIdle');
  // the raw JSON view holds the same request
  await page.getByLabel('Edit as raw JSON').check();
  const rawJson = JSON.parse(await page.getByLabel('Request as JSON').inputValue());
  check(rawJson.type === (version === '1.6' ? 'Soft' : 'OnIdle'), 'raw JSON of the form: ' + JSON.stringify(rawJson));
  await page.getByLabel('Edit as raw JSON').uncheck();
  await page.locator('#ocpp-send').click();
  const answer = page.locator('#ocpp-answer .answer:not([data-status="422"])');
  await answer.waitFor({ timeout: LONG });
  const outcome = await answer.getAttribute('data-outcome');
  check(outcome === 'answered', 'Reset was not answered: ' + (await answer.innerText()));
  check(/Accepted|Scheduled/.test(await answer.innerText()), 'Reset answer: ' + (await answer.innerText()));
  await shot('17-station-reset-answered');

  step('the other pages');
  for (const [hash, name, title] of [
    ['#/roaming', '18-roaming', 'Roaming partners'],
    ['#/firmware', '19-firmware', 'Firmware'],
    ['#/alerts', '20-alerts', 'Alerts'],
    ['#/overview', '21-overview', 'Overview'],
  ]) {
    await go(hash);
    await page.locator('#view h1', { hasText: title }).waitFor();
    await page.waitForTimeout(500);
    await view().locator('.error').count().then((n) => check(n === 0, `${title} shows an error: ` + n));
    await shot(name);
  }

  step('a periodic event stream plotted as a time series');
  await go('#/streams');
  await view().locator('input[name="station"]').fill('STRM0');
  await page.getByRole('button', { name: 'Show its streams' }).click();
  await page.waitForFunction(() => document.body.dataset.route === '#/streams/STRM0');
  let points = 0;
  for (let i = 0; i < 60 && points < 3; i++) {
    // the station opens its stream once booted; its values come every second
    await go('#/streams/STRM0');
    if ((await page.locator('#stream-list tr[data-stream="1"]').count()) === 0) {
      await page.waitForTimeout(1000);
      continue;
    }
    await page.locator('#stream-list tr[data-stream="1"] a').click();
    await page.waitForFunction(() => document.body.dataset.route === '#/streams/STRM0/1');
    points = Number((await page.locator('#stream-chart').getAttribute('data-points')) || 0);
    if (points < 3) await page.waitForTimeout(1000);
  }
  check(points >= 3, 'stream values plotted: ' + points);
  await page.locator('#stream-chart canvas').first().waitFor();
  check(/values in the last hour/.test(await page.locator('#stream-summary').innerText()), 'the stream summary');
  await view().locator('.error').count().then((n) => check(n === 0, 'the streams page shows an error: ' + n));
  await shot('21b-event-stream');

  step('site power: set the site limit through the form, see planned vs delivered');
  await go('#/site');
  await page.locator('#view h1', { hasText: 'Site power' }).waitFor();
  await page.getByLabel('Site limit (W)').fill('22000');
  await page.getByLabel('Per phase (A)').fill('32');
  await page.getByRole('button', { name: 'Set limits' }).click();
  await page.locator('.toast', { hasText: 'Limits set' }).waitFor();
  await page.locator('#site-power-chart canvas').first().waitFor({ timeout: LONG });
  check(/22 kW, 32 A per phase/.test(await view().locator('.facts').first().innerText()), 'the limits in force shown');
  await view().locator('.error').count().then((n) => check(n === 0, 'Site power shows an error: ' + n));
  await shot('21c-site-power');

  step('upload a firmware image and start a campaign for the station');
  await go('#/firmware');
  await page.getByLabel('Image file').setInputFiles({ name: 'lab-fw-1.2.3.bin', mimeType: 'application/octet-stream', buffer: Buffer.alloc(4096, 7) });
  check((await page.getByLabel('Stored as').inputValue()) === 'lab-fw-1.2.3.bin', 'the stored name follows the file');
  await page.getByRole('button', { name: 'Upload' }).click();
  await page.locator('.success', { hasText: 'Stored lab-fw-1.2.3.bin (4 KiB)' }).waitFor();
  check((await page.getByLabel('Uploaded image').inputValue()) === 'lab-fw-1.2.3.bin', 'the campaign form takes the uploaded image');
  await page.getByLabel('Stations').fill(STATION);
  await page.getByRole('button', { name: 'Start campaign' }).click();
  await page.locator('.success', { hasText: /Campaign \d+ started: [01] of 1 stations accepted/ }).waitFor({ timeout: LONG });
  await page.locator(`tr[data-campaign] a`, { hasText: STATION }).waitFor();
  await shot('22-firmware-campaign');

  step('issue a roaming token A through the form');
  await go('#/roaming');
  await page.getByLabel('Partner name').fill('Lab eMSP');
  await page.getByRole('button', { name: 'Issue token A' }).click();
  await page.getByLabel('Token A', { exact: true }).waitFor();
  check((await page.getByLabel('Token A', { exact: true }).inputValue()).length > 10, 'token A shown');

  step('sign out; a key in the address leaves the address bar at once');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('API key').waitFor();
  check((await page.evaluate(() => sessionStorage.getItem('csms-key'))) === null, 'the key outlived the sign-out');
  await page.goto(BASE + '/?key=' + encodeURIComponent(KEY) + '#/stations');
  await page.locator('#view h1', { hasText: 'Stations' }).waitFor();
  check(!page.url().includes(KEY), 'the key stayed in the address: ' + page.url());

  check(problems.length === 0, 'problems on the pages:\n' + problems.join('\n'));
  console.log('OK every step passed');
  await browser.close();
  process.exit(0);
} catch (e) {
  console.log(`FAILED at step "${current}": ${e.message}`);
  if (problems.length) console.log('problems on the pages:\n' + problems.join('\n'));
  try {
    await shot('failure');
  } catch {
    /* the page may be gone */
  }
  await browser.close().catch(() => {});
  process.exit(1);
}
