// Fleets: accounts that pay their drivers', cards' and vehicles' sessions
// by a monthly invoice. The list, and one fleet with its members, cards,
// vehicles and documents; issuing the invoice of a month.

import { get, post, seg, hasRoute } from '../api.js';
import { h, fill, card, facts, staticTable, field, errorBox, toast, busy, trackEditing } from '../ui.js';
import { time, minor } from '../format.js';

/** `YYYY-MM` of the month before this one (what the CSMS invoices by default). */
function previousMonth() {
  const d = new Date();
  d.setDate(1);
  d.setMonth(d.getMonth() - 1);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}`;
}

/** Columns of a documents table (a fleet's, or every fleet's). */
export function documentColumns({ fleet = false, fleetName } = {}) {
  return [
    { label: 'Number', cell: (d) => h('a', { href: '#/invoices/' + encodeURIComponent(d.number) }, d.number) },
    { label: 'Kind', cell: (d) => (d.kind === 'credit_note' ? 'Credit note' + (d.credits ? ` (of ${d.credits})` : '') : 'Invoice') },
    fleet ? { label: 'Fleet', cell: (d) => h('a', { href: '#/fleets/' + encodeURIComponent(d.fleet_id) }, fleetName?.(d.fleet_id) || d.fleet_id) } : null,
    { label: 'Period', cell: (d) => d.period },
    { label: 'Total', class: 'num', cell: (d) => h('strong', { dataset: { total: d.total_minor } }, minor(d.total_minor, d.currency)) },
    { label: 'Issued', cell: (d) => time(d.issued_at) },
    { label: 'E-mailed', cell: (d) => (d.sent_at ? time(d.sent_at) : 'not yet') },
  ].filter(Boolean);
}

/** The form that issues a fleet's invoice of a month. */
function invoiceForm(fleet, onIssued) {
  const period = h('input', { type: 'month', name: 'period', required: true, value: previousMonth(), max: previousMonth() });
  const err = h('div');
  const go = h('button', { type: 'submit' }, 'Issue invoice');
  const form = h(
    'form',
    { class: 'stack', id: 'invoice-form' },
    h('p', { class: 'muted' }, "The fleet's priced sessions that ended in the month (in the CSMS's time zone) and are on no invoice yet. A month is invoiced once; it must be over."),
    h('div', { class: 'form-grid' }, field('Month', period), h('div', { class: 'actions' }, go)),
    err,
  );
  const done = trackEditing(form);
  form.addEventListener(
    'submit',
    busy(go, async () => {
      if (!form.reportValidity()) return;
      let doc;
      try {
        doc = await post(`/api/fleets/${seg(fleet.id)}/invoices`, { period: period.value });
      } catch (e) {
        fill(err, errorBox(e));
        return;
      }
      fill(err);
      done();
      toast(`Invoice ${doc.number} issued: ${minor(doc.total_minor, doc.currency, doc.minor_unit)}.`);
      onIssued?.(doc);
    }),
  );
  return form;
}

async function detail(view, id) {
  let f;
  try {
    f = await get('/api/fleets/' + seg(id));
  } catch (e) {
    fill(view, h('div', { class: 'page-head' }, h('h1', {}, 'Fleet'), h('a', { href: '#/fleets' }, 'Back to fleets')), errorBox(e));
    return {};
  }
  const canInvoice = await hasRoute('/api/fleets/{id}/invoices', 'post');
  const docs = h('div', { id: 'fleet-documents' });
  const loadDocs = async () => {
    try {
      const rows = await get(`/api/fleets/${seg(id)}/invoices`);
      fill(docs, staticTable({ rows, empty: 'No invoice yet.', rowAttrs: (d) => ({ dataset: { document: d.number, kind: d.kind } }), columns: documentColumns() }));
    } catch (e) {
      fill(docs, errorBox(e));
    }
  };
  fill(
    view,
    h('div', { class: 'page-head' }, h('h1', { dataset: { fleet: f.id } }, f.name), h('a', { href: '#/fleets' }, 'Back to fleets')),
    card('Account', facts([['Fleet', f.id], ['Invoices to', f.email], ['Since', time(f.created_at)]])),
    card(
      'Members',
      staticTable({
        rows: f.members,
        empty: 'No driver: add drivers with PUT /api/fleets/{id}/members/{driver_id}.',
        rowAttrs: (m) => ({ dataset: { member: m.driver_id } }),
        columns: [
          { label: 'Driver', cell: (m) => h('a', { href: '#/drivers/' + encodeURIComponent(m.driver_id) }, m.email) },
          { label: 'Role', cell: (m) => (m.role === 'manager' ? 'Manager (reads the fleet in the app)' : 'Driver') },
          { label: 'Since', cell: (m) => time(m.created_at) },
        ],
      }),
    ),
    card(
      'Cards',
      staticTable({
        rows: f.cards,
        empty: 'No card.',
        rowAttrs: (c) => ({ dataset: { token: c.id_token } }),
        columns: [
          { label: 'Token', cell: (c) => c.id_token },
          { label: 'Label', cell: (c) => c.label || '—' },
          { label: 'Since', cell: (c) => time(c.created_at) },
        ],
      }),
    ),
    card(
      'Vehicles',
      staticTable({
        rows: f.vehicles,
        empty: 'No vehicle.',
        rowAttrs: (v) => ({ dataset: { vehicle: v.id } }),
        columns: [
          { label: 'Plate', cell: (v) => v.plate },
          { label: 'Label', cell: (v) => v.label || '—' },
          { label: 'Token', cell: (v) => v.id_token || '—' },
          { label: 'Since', cell: (v) => time(v.created_at) },
        ],
      }),
    ),
    card('Invoices and credit notes', canInvoice ? invoiceForm(f, () => loadDocs()) : null, docs),
  );
  await loadDocs();
  return {};
}

export async function render(view, args = []) {
  if (args.length) return detail(view, args[0]);
  const list = h('div');
  const load = async () => {
    try {
      const rows = await get('/api/fleets');
      fill(
        list,
        staticTable({
          rows,
          empty: 'No fleet yet: create one with POST /api/fleets.',
          rowAttrs: (f) => ({ dataset: { fleet: f.id } }),
          columns: [
            { label: 'Fleet', cell: (f) => h('a', { href: '#/fleets/' + encodeURIComponent(f.id) }, f.name) },
            { label: 'Id', cell: (f) => h('span', { class: 'mono' }, f.id) },
            { label: 'Invoices to', cell: (f) => f.email },
            { label: 'Since', cell: (f) => time(f.created_at) },
          ],
        }),
      );
    } catch (e) {
      fill(list, errorBox(e));
    }
  };
  fill(view, h('div', { class: 'page-head' }, h('h1', {}, 'Fleets'), h('a', { href: '#/invoices' }, 'All invoices')), card(null, list));
  await load();
  return {};
}
