// Invoices: every fleet's invoices and credit notes (by kind, search), and
// one document with its lines and totals per tax rate, downloads (PDF, CSV,
// JSON) and a credit note for disputed sessions.

import { get, post, seg, download, hasRoute } from '../api.js';
import { h, fill, card, facts, pagedTable, staticTable, field, select, formDialog, confirm, errorBox, toast, busy } from '../ui.js';
import { time, minor, kwhValue } from '../format.js';
import { documentColumns } from './fleets.js';

const KINDS = { invoice: 'Invoice', credit_note: 'Credit note' };

/** Asks which sessions to credit and why, then issues the credit note. */
function creditDialog(doc, onIssued) {
  const sessions = [...new Set(doc.lines.map((l) => l.session_id))];
  const boxes = sessions.map((s) => h('input', { type: 'checkbox', name: 'session', value: s }));
  const reason = h('textarea', { name: 'reason', required: true, maxlength: 200, rows: 3, placeholder: 'e.g. the driver disputes the session: the station did not charge' });
  formDialog(`Credit note for ${doc.number}`, {
    fields: [
      h('p', {}, 'The sessions chosen are credited in full: their lines turned on a credit note, numbered in its own series, e-mailed like the invoice. A session is credited once.'),
      h(
        'fieldset',
        {},
        h('legend', {}, 'Disputed sessions'),
        sessions.map((s, i) => h('label', { class: 'check' }, boxes[i], ' ', s)),
      ),
      field('Reason (printed on the credit note)', reason),
    ],
    action: 'Issue credit note',
    danger: true,
    run: async (refuse) => {
      const chosen = boxes.filter((b) => b.checked).map((b) => b.value);
      if (!chosen.length) return refuse('Choose at least one session.');
      if (!(await confirm(`Credit ${chosen.length} session${chosen.length > 1 ? 's' : ''} of ${doc.number}?`, 'A credit note cannot be withdrawn once issued.', 'Issue credit note'))) return false;
      const cn = await post(`/api/invoices/${seg(doc.number)}/credit-notes`, { sessions: chosen, reason: reason.value.trim() });
      toast(`Credit note ${cn.number} issued: ${minor(cn.total_minor, cn.currency, cn.minor_unit)}.`);
      onIssued?.(cn);
    },
  });
}

async function detail(view, number) {
  let doc;
  try {
    doc = await get('/api/invoices/' + seg(number));
  } catch (e) {
    fill(view, h('div', { class: 'page-head' }, h('h1', {}, 'Invoice'), h('a', { href: '#/invoices' }, 'Back to invoices')), errorBox(e));
    return {};
  }
  const m = (v) => minor(v, doc.currency, doc.minor_unit);
  const canCredit = doc.kind === 'invoice' && (await hasRoute('/api/invoices/{number}/credit-notes', 'post'));
  const dl = (ext, label) => {
    const b = h('button', { type: 'button', class: 'secondary' }, label);
    b.addEventListener(
      'click',
      busy(b, async () => {
        try {
          await download(`/api/invoices/${seg(doc.number)}${ext === 'json' ? '' : '/' + ext}`, `${doc.number}.${ext}`);
        } catch (e) {
          toast(e.message, 'error');
        }
      }),
    );
    return b;
  };
  fill(
    view,
    h(
      'div',
      { class: 'page-head' },
      h('h1', { dataset: { document: doc.number } }, `${KINDS[doc.kind] || doc.kind} ${doc.number}`),
      h('a', { href: '#/fleets/' + encodeURIComponent(doc.fleet_id) }, 'Fleet'),
      h('a', { href: '#/invoices' }, 'Back to invoices'),
    ),
    card(
      null,
      facts([
        ['Fleet', `${doc.fleet_name} (${doc.fleet_id})`],
        ['Bill to', doc.bill_to],
        ['Issuer', doc.issuer],
        ['Period', doc.period],
        ['Issued', time(doc.issued_at)],
        doc.credits ? ['Credits', h('a', { href: '#/invoices/' + encodeURIComponent(doc.credits) }, doc.credits)] : null,
        doc.reason ? ['Reason', doc.reason] : null,
        ['Total excl. VAT', m(doc.total_net_minor)],
        ['VAT', m(doc.total_tax_minor)],
        ['Total', h('strong', { id: 'document-total', dataset: { total: doc.total_minor } }, m(doc.total_minor))],
      ]),
      h('div', { class: 'actions' }, dl('pdf', 'Download PDF'), dl('csv', 'Download CSV'), dl('json', 'Download JSON'), canCredit ? h('button', { type: 'button', class: 'danger', onclick: () => creditDialog(doc, (cn) => (location.hash = '#/invoices/' + encodeURIComponent(cn.number))) }, 'Issue credit note…') : null),
    ),
    card(
      'Lines',
      staticTable({
        rows: doc.lines,
        empty: 'No line.',
        rowAttrs: (l) => ({ dataset: { session: l.session_id } }),
        columns: [
          { label: 'Session', cell: (l) => l.session_id },
          { label: 'Station', cell: (l) => h('a', { href: '#/stations/' + encodeURIComponent(l.station) }, l.station) },
          { label: 'Started', cell: (l) => time(l.started_at) },
          { label: 'Stopped', cell: (l) => time(l.stopped_at) },
          { label: 'Energy', class: 'num', cell: (l) => kwhValue(l.energy_kwh) },
          { label: 'VAT rate', class: 'num', cell: (l) => `${Number(l.tax_rate)} %` },
          { label: 'Excl. VAT', class: 'num', cell: (l) => m(l.net_minor) },
          { label: 'VAT', class: 'num', cell: (l) => m(l.tax_minor) },
          { label: 'Amount', class: 'num', cell: (l) => m(l.amount_minor) },
        ],
      }),
    ),
    card(
      'Totals per VAT rate',
      staticTable({
        rows: doc.tax_totals,
        rowAttrs: (t) => ({ dataset: { rate: t.tax_rate } }),
        columns: [
          { label: 'VAT rate', class: 'num', cell: (t) => `${Number(t.tax_rate)} %` },
          { label: 'Excl. VAT', class: 'num', cell: (t) => m(t.net_minor) },
          { label: 'VAT', class: 'num', cell: (t) => m(t.tax_minor) },
          { label: 'Amount', class: 'num', cell: (t) => h('strong', {}, m(t.amount_minor)) },
        ],
      }),
    ),
  );
  return {};
}

export async function render(view, args = []) {
  if (args.length) return detail(view, args[0]);
  const q = h('input', { type: 'search', name: 'q', placeholder: 'number or fleet id…', autocomplete: 'off' });
  const kind = select([['', 'any'], ['invoice', 'Invoices'], ['credit_note', 'Credit notes']], '', { name: 'kind' });
  // fleet names for the list (fleets are few; their ids are in every row)
  const names = new Map();
  await get('/api/fleets')
    .then((fs) => fs.forEach((f) => names.set(f.id, f.name)))
    .catch(() => {});
  const table = pagedTable({
    limit: 50,
    empty: "No document matches: issue a fleet's invoice on its page.",
    load: (p) => get('/api/invoices', { ...p, status: kind.value, q: q.value.trim() }),
    rowAttrs: (d) => ({ dataset: { document: d.number, kind: d.kind } }),
    columns: documentColumns({ fleet: true, fleetName: (id) => names.get(id) }),
  });
  let debounce;
  q.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => table.reset(), 250);
  });
  kind.addEventListener('change', () => table.reset());
  fill(
    view,
    h('div', { class: 'page-head' }, h('h1', {}, 'Invoices'), h('a', { href: '#/fleets' }, 'Fleets')),
    card(null, h('form', { class: 'toolbar', role: 'search', 'data-live-keep': true, onsubmit: (e) => (e.preventDefault(), table.reset()) }, field('Search', q), field('Kind', kind)), table.el),
  );
  await table.reset();
  return { dispose: () => clearTimeout(debounce) };
}
