// CDRs and payments: the priced sessions and what was held and captured
// from prepaid wallets, by station and time.

import { get, hasRoute } from '../api.js';
import { h, fill, card, pagedTable, pill, field, select } from '../ui.js';
import { time, money, fromLocalInput } from '../format.js';
import { sessionDialog } from './sessions.js';

/** The session a CDR is of (the CSMS's own field, else OCPI's session_id). */
const cdrSession = (c) => c.session_id || c.session || c.id;
/** The station a CDR is of. */
const cdrStation = (c) => c.station_id || c.cdr_location?.id || '—';

export async function render(view) {
  const station = h('input', { type: 'search', name: 'station', placeholder: 'identity', autocomplete: 'off' });
  const since = h('input', { type: 'datetime-local', name: 'since' });
  const until = h('input', { type: 'datetime-local', name: 'until' });
  const payStatus = select([['', 'any'], 'Held', 'Captured', 'Released', 'Refused'], '', { name: 'payment-status' });
  const filters = () => ({ station: station.value.trim(), since: fromLocalInput(since.value), until: fromLocalInput(until.value) });
  const cdrs = pagedTable({
    limit: 50,
    empty: 'No CDR yet: one is made when a session ends under a tariff.',
    load: (p) => get('/api/cdrs', { ...p, ...filters() }),
    rowAttrs: (c) => ({ dataset: { cdr: c.id, session: cdrSession(c) } }),
    columns: [
      { label: 'Session', cell: (c) => h('button', { type: 'button', class: 'link', onclick: () => sessionDialog(cdrSession(c)) }, String(cdrSession(c))) },
      { label: 'Station', cell: (c) => cdrStation(c) },
      { label: 'Start', cell: (c) => time(c.start_date_time) },
      { label: 'End', cell: (c) => time(c.end_date_time) },
      { label: 'Energy', class: 'num', cell: (c) => (c.total_energy !== undefined ? Number(c.total_energy).toLocaleString(undefined, { maximumFractionDigits: 3 }) + ' kWh' : '—') },
      { label: 'Excl. VAT', class: 'num', cell: (c) => money(c.total_cost?.excl_vat, c.currency) },
      { label: 'Incl. VAT', class: 'num', cell: (c) => h('strong', {}, money(c.total_cost?.incl_vat, c.currency)) },
    ],
  });
  const hasPayments = await hasRoute('/api/payments', 'get');
  const payments = hasPayments
    ? pagedTable({
        limit: 50,
        empty: 'No payment yet: tokens with a prepaid wallet get a hold at start and a capture at the end.',
        load: (p) => get('/api/payments', { ...p, ...filters(), status: payStatus.value }),
        rowAttrs: (p) => ({ dataset: { payment: p.status, session: p.session_id } }),
        columns: [
          { label: 'Session', cell: (p) => h('button', { type: 'button', class: 'link', onclick: () => sessionDialog(p.session_id) }, String(p.session_id)) },
          { label: 'Station', cell: (p) => p.station_id || p.station || '—' },
          { label: 'Token', cell: (p) => p.id_token },
          { label: 'Status', cell: (p) => pill(p.status, String(p.status).toLowerCase()) },
          { label: 'Held at start', class: 'num', cell: (p) => money(p.held, p.receipt?.currency) },
          { label: 'Charged', class: 'num', cell: (p) => (p.receipt ? h('strong', {}, money(p.receipt.charged, p.receipt.currency)) : '—') },
          { label: 'Wallet after', class: 'num', cell: (p) => (p.receipt ? money(p.receipt.balance_after, p.receipt.currency) : '—') },
          { label: 'Last change', cell: (p) => time(p.updated_at) },
        ],
      })
    : null;
  let debounce;
  const again = () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => Promise.all([cdrs.reset(), payments?.reset()]), 250);
  };
  station.addEventListener('input', again);
  [since, until, payStatus].forEach((i) => i.addEventListener('change', again));
  fill(
    view,
    h('div', { class: 'page-head' }, h('h1', {}, 'CDRs and payments')),
    card(null, h('form', { class: 'toolbar', role: 'search', 'data-live-keep': true, onsubmit: (e) => (e.preventDefault(), again()) }, field('Station', station), field('From', since), field('Until', until), hasPayments ? field('Payment status', payStatus) : null)),
    card('Charge detail records', cdrs.el),
    card('Payments', payments ? payments.el : h('p', { class: 'muted' }, 'This CSMS does not list payments yet; open a session to see its payment.')),
  );
  await Promise.all([cdrs.reset(), payments?.reset()]);
  return {
    refresh: async (batch) => {
      if (batch.types.has('session_completed') || batch.types.has('session_closed') || [...batch.types].some((t) => t.startsWith('payment'))) await Promise.all([cdrs.refresh(), payments?.refresh()]);
    },
    dispose: () => clearTimeout(debounce),
  };
}
