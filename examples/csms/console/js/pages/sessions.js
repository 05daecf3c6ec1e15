// Sessions: filters by station, status and time; start, duration,
// energy, power, running cost; a session's detail with its CDR and
// payment; force-close with a reason.

import { get, post, seg, hasRoute, bodyProperties } from '../api.js';
import { h, fill, card, facts, pagedTable, staticTable, pill, field, select, modal, formDialog, confirm, errorBox, toast } from '../ui.js';
import { time, kwh, kw, money, minor, minorDigits, sessionDuration, fromLocalInput } from '../format.js';
import { timeChart } from '../chart.js';

// completed sessions' CDR costs never change: kept once read
const cdrCost = new Map();
// active sessions' power now and running cost, as of the last page loaded
let live = new Map();
// the default tariff's currency (running costs are priced under it)
let currencyAt = 0;
let currency = 'EUR';

/**
 * A page of sessions (`GET /api/sessions`) and, when it has active ones,
 * their power now and running cost (`GET /api/sessions/live`, by station
 * when the page is of one station).
 */
export async function loadSessions(params) {
  const page = await get('/api/sessions', params);
  const active = page.items.filter((s) => s.status === 'Active');
  if (active.length) {
    const stations = new Set(active.map((s) => s.station_id));
    const [rows] = await Promise.all([
      get('/api/sessions/live', { station: stations.size === 1 ? [...stations][0] : undefined }).catch(() => []),
      Date.now() - currencyAt > 10_000
        ? get('/api/tariffs/default')
            .then((t) => ((currency = t.currency || 'EUR'), (currencyAt = Date.now())))
            .catch(() => (currencyAt = Date.now()))
        : null,
    ]);
    live = new Map(rows.map((r) => [r.session_id, r]));
  }
  return page;
}

/** What a session costs: from its CDR once completed, else its running cost under the default tariff. */
function costCell(s) {
  if (s.status === 'Active') {
    const l = live.get(s.id);
    if (!l || l.running_cost === null || l.running_cost === undefined) return h('span', { class: 'muted', title: 'no default tariff' }, '—');
    return h('span', { title: 'so far under the default tariff, incl. VAT' }, money(l.running_cost, currency));
  }
  const el = h('span', { class: 'muted' }, '…');
  const show = (text, title) => {
    el.textContent = text;
    el.title = title;
    el.className = '';
  };
  if (cdrCost.has(s.id)) {
    show(cdrCost.get(s.id), 'from its CDR, incl. VAT');
    return el;
  }
  get(`/api/sessions/${seg(s.id)}/cdr`)
    .then((c) => {
      cdrCost.set(s.id, money(c.total_cost?.incl_vat, c.currency));
      show(cdrCost.get(s.id), 'from its CDR, incl. VAT');
    })
    .catch((e) => (e.status === 404 ? show('not priced', 'no CDR: no default tariff, or not settled yet') : show('—', e.message)));
  return el;
}

/** Power now of an active session (its latest reading), else its mean power. */
function powerCell(s) {
  const l = s.status === 'Active' ? live.get(s.id) : null;
  if (l && l.power_w !== null && l.power_w !== undefined) return h('span', { title: 'latest reading' }, kw(l.power_w));
  if (!s.started_at) return '—';
  const end = s.stopped_at ? new Date(s.stopped_at) : new Date();
  const hours = (end - new Date(s.started_at)) / 3600000;
  return hours > 0 ? h('span', { class: 'muted', title: 'mean over the session' }, kw(Number(s.energy_wh || 0) / hours)) : '—';
}

export function sessionRow(s) {
  return { dataset: { session: s.id, status: s.status } };
}

export function statusPill(s) {
  if (s.status === 'Active') return pill('Charging', 'active', 'Active');
  const by = s.closed_by_csms?.by;
  return pill(by === 'operator' ? 'Closed by operator' : by === 'recovery' ? 'Closed by CSMS' : 'Completed', 'completed', s.stop_reason ? 'stop reason: ' + s.stop_reason : 'Completed');
}

/** Columns of a sessions table; `station: false` leaves the station out. */
export function sessionColumns({ station = true, onChange } = {}) {
  return [
    { label: 'Session', cell: (s) => h('button', { type: 'button', class: 'link', onclick: () => sessionDialog(s.id, onChange) }, s.id.length > 26 ? s.id.slice(0, 24) + '…' : s.id) },
    station ? { label: 'Station', cell: (s) => h('a', { href: '#/stations/' + encodeURIComponent(s.station_id) }, s.station_id) } : null,
    { label: 'Connector', cell: (s) => (s.evse_id !== null && s.evse_id !== undefined ? `${s.evse_id}/${s.connector_id ?? 1}` : s.connector_id ?? '—') },
    { label: 'Token', cell: (s) => s.id_token || '—' },
    { label: 'Status', cell: statusPill },
    { label: 'Started', cell: (s) => time(s.started_at) },
    { label: 'Duration', class: 'num', cell: sessionDuration },
    { label: 'Energy', class: 'num', cell: (s) => kwh(s.energy_wh) },
    { label: 'Power', class: 'num', cell: powerCell },
    { label: 'Cost', class: 'num', cell: costCell },
    {
      label: 'Actions',
      cell: (s) => (s.status === 'Active' ? h('button', { type: 'button', class: 'secondary small', 'aria-label': 'Force-close session ' + s.id, onclick: () => closeDialog(s, onChange) }, 'Force close') : ''),
    },
  ].filter(Boolean);
}

/** Asks for a reason and force-closes an active session. */
export function closeDialog(s, onClosed) {
  const reason = h('textarea', { name: 'reason', required: true, maxlength: 255, rows: 3, placeholder: 'e.g. station stuck in Charging after a power cut' });
  formDialog(`Force-close session at ${s.station_id}`, {
    fields: [
      h('p', {}, `The CSMS ends session ${s.id} itself, priced up to its last meter value (${kwh(s.energy_wh)}), and settles it like any other. Use this only when the station will not end it.`),
      field('Reason (kept with the session)', reason),
    ],
    action: 'Force close',
    danger: true,
    focus: reason,
    run: async () => {
      await post(`/api/sessions/${seg(s.id)}/close`, { reason: reason.value.trim() });
      toast(`Session ${s.id} closed.`);
      onClosed?.();
    },
  });
}

/** A session in a dialog: facts, energy over time, its CDR and payment. */
export function sessionDialog(id, onChange) {
  const body = h('div', { class: 'stack' }, h('p', { class: 'muted' }, 'Loading…'));
  modal(`Session ${id}`, () => body);
  (async () => {
    let s;
    try {
      s = await get('/api/sessions/' + seg(id));
    } catch (e) {
      fill(body, errorBox(e));
      return;
    }
    const chartBox = h('div', { class: 'chart' });
    const cdrBox = h('div', { id: 'session-cdr' });
    const payBox = h('div', { id: 'session-payment' });
    const closed = s.closed_by_csms;
    fill(
      body,
      facts([
        ['Station', h('a', { href: '#/stations/' + encodeURIComponent(s.station_id) }, s.station_id)],
        ['Status', statusPill(s)],
        ['Connector', s.evse_id !== null && s.evse_id !== undefined ? `EVSE ${s.evse_id}, connector ${s.connector_id ?? 1}` : s.connector_id ?? '—'],
        ['Token', s.id_token || '—'],
        ['Started', time(s.started_at)],
        ['Stopped', s.stopped_at ? time(s.stopped_at) : 'still charging'],
        ['Duration', sessionDuration(s)],
        ['Energy', kwh(s.energy_wh)],
        ['Stop reason', s.stop_reason || '—'],
        closed ? ['Closed by', `${closed.by === 'operator' ? 'the operator' : 'the CSMS (stuck-session rules)'} at ${time(closed.closed_at)}: ${closed.reason || closed.stop_reason || ''}`] : null,
        ['Transaction id', s.ocpp_tx_id],
      ]),
      s.status === 'Active' ? h('div', { class: 'actions' }, h('button', { type: 'button', class: 'danger', onclick: () => closeDialog(s, onChange) }, 'Force close…')) : null,
      chartBox,
      h('h3', {}, 'CDR'),
      cdrBox,
      h('h3', {}, 'Payment'),
      payBox,
    );
    const energy = (s.meter_values || [])
      .filter((m) => (m.measurand || 'Energy.Active.Import.Register') === 'Energy.Active.Import.Register' && !m.phase)
      .map((m) => [Date.parse(m.timestamp) / 1000, Number(m.value) * (String(m.unit || '').toLowerCase().startsWith('k') ? 1 : 0.001)])
      .sort((a, b) => a[0] - b[0]);
    const first = energy.length ? energy[0][1] : 0;
    timeChart(chartBox, { title: 'Energy charged', xs: energy.map((e) => e[0]), series: [{ label: 'Charged', unit: 'kWh', values: energy.map((e) => e[1] - first) }], xLabel: 'Time (local)', height: 180 });
    get(`/api/sessions/${seg(id)}/cdr`)
      .then((c) => fill(cdrBox, cdrFacts(c)))
      .catch((e) => fill(cdrBox, h('p', { class: 'muted' }, e.status === 404 ? (s.status === 'Active' ? 'Made when the session ends.' : 'None: the session was not priced (no default tariff?).') : e.message)));
    showPayment(id, payBox);
  })();
}

/** A session's payment: its wallet's, else its card's (with refunds), else none. */
async function showPayment(id, box) {
  try {
    fill(box, paymentFacts(await get(`/api/sessions/${seg(id)}/payment`)));
    return;
  } catch (e) {
    if (e.status !== 404) return fill(box, h('p', { class: 'muted' }, e.message));
  }
  try {
    const [p, canRefund] = await Promise.all([get(`/api/sessions/${seg(id)}/card-payment`), hasRoute('/api/sessions/{id}/refunds', 'post')]);
    fill(box, cardPaymentFacts(p, canRefund ? () => refundDialog(p, () => showPayment(id, box)) : null));
  } catch (e) {
    fill(box, h('p', { class: 'muted' }, e.status === 404 ? 'None: no prepaid wallet or card paid for it (post-paid, or a fleet pays by invoice).' : e.message));
  }
}

/** A card payment in words: the gateway's status, held, captured and refunded amounts, its refunds. */
export function cardPaymentFacts(p, onRefund) {
  const m = (v) => minor(v, p.currency);
  return h(
    'div',
    { dataset: { payment: p.status, provider: 'card' } },
    facts([
      ['Paid by', 'card, through the gateway'],
      ['Status', pill(p.status, String(p.status).toLowerCase())],
      ['Gateway says', p.gateway_status || '—'],
      ['Held at start', m(p.held_minor)],
      ['Captured', h('strong', { dataset: { captured: p.captured_minor } }, m(p.captured_minor))],
      ['Refunded', h('span', { dataset: { refunded: p.refunded_minor } }, m(p.refunded_minor))],
      p.receipt ? ['Receipt', `${p.receipt.charged} ${p.receipt.currency} at ${time(p.receipt.at)}`] : null,
      ['Driver', h('a', { href: '#/drivers/' + encodeURIComponent(p.driver_id) }, p.driver_id)],
    ]),
    p.refunds.length
      ? staticTable({
          rows: p.refunds,
          caption: 'Refunds',
          rowAttrs: (r) => ({ dataset: { refund: r.id, status: r.status } }),
          columns: [
            { label: 'Refund', cell: (r) => r.id },
            { label: 'Amount', class: 'num', cell: (r) => m(r.amount_minor) },
            { label: 'Status', cell: (r) => pill(r.status, r.status === 'Succeeded' ? 'ok' : r.status === 'Failed' ? 'bad' : 'pending') },
            { label: 'Asked', cell: (r) => time(r.created_at) },
          ],
        })
      : null,
    onRefund && p.refundable_minor > 0 ? h('div', { class: 'actions' }, h('button', { type: 'button', class: 'danger', onclick: onRefund }, 'Refund…')) : null,
  );
}

/** Asks for an amount (and a reason where the CSMS keeps one), confirms, refunds part of a captured card payment. */
async function refundDialog(p, onDone) {
  const digits = minorDigits(p.currency);
  const step = (1 / 10 ** digits).toFixed(digits);
  const takesReason = (await bodyProperties('/api/sessions/{id}/refunds', 'post')).has('reason');
  const most = (p.refundable_minor / 10 ** digits).toFixed(digits);
  const amount = h('input', { name: 'amount', type: 'number', required: true, min: step, max: most, step, inputmode: 'decimal', value: most });
  const reason = h('textarea', { name: 'reason', required: true, maxlength: 200, rows: 2, placeholder: 'e.g. the connector stopped delivering; goodwill' });
  formDialog(`Refund session ${p.session_id}`, {
    fields: [
      h('p', {}, `Up to ${minor(p.refundable_minor, p.currency)} of the ${minor(p.captured_minor, p.currency)} captured goes back to the driver's card through the gateway.`),
      field(`Amount (${p.currency})`, amount),
      takesReason ? field('Reason', reason) : null,
    ],
    action: 'Refund',
    danger: true,
    focus: amount,
    run: async () => {
      const amountMinor = Math.round(Number(amount.value) * 10 ** digits);
      if (!(await confirm(`Refund ${minor(amountMinor, p.currency)}?`, `The card of session ${p.session_id} is refunded; this cannot be undone.`, 'Refund'))) return false;
      const r = await post(`/api/sessions/${seg(p.session_id)}/refunds`, takesReason ? { amount_minor: amountMinor, reason: reason.value.trim() } : { amount_minor: amountMinor });
      toast(`Refund of ${minor(r.amount_minor, p.currency)}: ${r.status}.`);
      onDone?.();
    },
  });
}

/** A CDR in words. */
export function cdrFacts(c) {
  return facts([
    ['CDR', c.id],
    ['Period', `${time(c.start_date_time)} – ${time(c.end_date_time)}`],
    ['Energy', c.total_energy !== undefined ? Number(c.total_energy).toLocaleString(undefined, { maximumFractionDigits: 3 }) + ' kWh' : '—'],
    ['Charging time', c.total_time !== undefined ? Number(c.total_time).toLocaleString(undefined, { maximumFractionDigits: 3 }) + ' h' : '—'],
    ['Cost excl. VAT', money(c.total_cost?.excl_vat, c.currency)],
    ['Cost incl. VAT', h('strong', { dataset: { cost: c.total_cost?.incl_vat } }, money(c.total_cost?.incl_vat, c.currency))],
    ['Made', time(c.last_updated)],
  ]);
}

/** A payment in words. */
export function paymentFacts(p) {
  return h(
    'div',
    { dataset: { payment: p.status } },
    facts([
      ['Status', pill(p.status, String(p.status).toLowerCase())],
      ['Token', p.id_token],
      ['Held at start', money(p.held, p.receipt?.currency)],
      p.receipt ? ['Charged', h('strong', {}, money(p.receipt.charged, p.receipt.currency))] : null,
      p.receipt && Number(p.receipt.unpaid) ? ['Unpaid', money(p.receipt.unpaid, p.receipt.currency)] : null,
      p.receipt ? ['Wallet after', money(p.receipt.balance_after, p.receipt.currency)] : null,
      p.receipt ? ['Captured', time(p.receipt.at)] : null,
    ]),
  );
}

export async function render(view) {
  const station = h('input', { type: 'search', name: 'station', placeholder: 'identity', autocomplete: 'off' });
  const status = select([['', 'any'], ['Active', 'Active'], ['Completed', 'Completed']], '', { name: 'status' });
  const since = h('input', { type: 'datetime-local', name: 'since' });
  const until = h('input', { type: 'datetime-local', name: 'until' });
  const table = pagedTable({
    limit: 50,
    empty: 'No session matches.',
    load: (p) => loadSessions({ ...p, station: station.value.trim(), status: status.value, since: fromLocalInput(since.value), until: fromLocalInput(until.value) }),
    rowAttrs: sessionRow,
    columns: sessionColumns({ onChange: () => table.refresh() }),
  });
  let debounce;
  const again = () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => table.reset(), 250);
  };
  station.addEventListener('input', again);
  [status, since, until].forEach((i) => i.addEventListener('change', again));
  fill(
    view,
    h('div', { class: 'page-head' }, h('h1', {}, 'Sessions')),
    card(null, h('form', { class: 'toolbar', role: 'search', 'data-live-keep': true, onsubmit: (e) => (e.preventDefault(), table.reset()) }, field('Station', station), field('Status', status), field('Started from', since), field('Started before', until)), table.el),
  );
  await table.reset();
  return { refresh: () => table.refresh(), dispose: () => clearTimeout(debounce) };
}
