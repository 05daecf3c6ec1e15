// Drivers: the app's accounts by e-mail address (search), and one driver
// with how they pay (wallet or saved card), the tokens they own, their
// fleet and their latest sessions. Read only: drivers sign up, save cards
// and claim tokens in the app.

import { get, seg } from '../api.js';
import { h, fill, card, facts, pagedTable, staticTable, pill, field, errorBox } from '../ui.js';
import { time, fromLocalInput } from '../format.js';
import { sessionColumns, sessionRow } from './sessions.js';

/** How a driver pays, in words. */
function paying(d) {
  if (d.payment === 'card') return pill(d.card ? 'Card ' + d.card : 'Card', 'accepted', 'sessions are held and captured on the saved card');
  return pill('Wallet', 'held', "the token's prepaid wallet; post-paid without one");
}

const driverLink = (id, text) => h('a', { href: '#/drivers/' + encodeURIComponent(id) }, text || id);

async function detail(view, id) {
  let d;
  try {
    d = await get('/api/drivers/' + seg(id));
  } catch (e) {
    fill(view, h('div', { class: 'page-head' }, h('h1', {}, 'Driver'), h('a', { href: '#/drivers' }, 'Back to drivers')), errorBox(e));
    return {};
  }
  const sessions = h('div');
  const draw = () =>
    fill(
      sessions,
      staticTable({
        rows: d.sessions,
        empty: 'No session yet.',
        rowAttrs: sessionRow,
        columns: sessionColumns({ onChange: () => reload() }),
      }),
    );
  const reload = async () => {
    try {
      d = await get('/api/drivers/' + seg(id));
      draw();
    } catch {
      /* the page keeps what it showed */
    }
  };
  fill(
    view,
    h('div', { class: 'page-head' }, h('h1', { dataset: { driver: d.id } }, d.email), h('a', { href: '#/drivers' }, 'Back to drivers')),
    card(
      'Account',
      facts([
        ['Driver', d.id],
        ['E-mail', d.email],
        ['Pays by', paying(d)],
        ['Fleet', d.fleet ? [h('a', { href: '#/fleets/' + encodeURIComponent(d.fleet.fleet_id) }, d.fleet.fleet_id), ` (${d.fleet.role}: the fleet pays by invoice)`] : 'none'],
        ['Since', time(d.created_at)],
      ]),
    ),
    card(
      'Cards and tokens',
      staticTable({
        rows: d.tokens,
        empty: 'No token: the driver has not added a card or the app token yet.',
        rowAttrs: (t) => ({ dataset: { token: t.id_token } }),
        columns: [
          { label: 'Token', cell: (t) => t.id_token },
          { label: 'Kind', cell: (t) => (t.kind === 'app' ? 'App' : 'RFID card') },
          { label: 'Label', cell: (t) => t.label || '—' },
          { label: 'Owned since', cell: (t) => time(t.created_at) },
        ],
      }),
    ),
    card('Latest sessions', sessions),
  );
  draw();
  return {
    refresh: async (batch) => {
      if (batch.types.has('session_started') || batch.types.has('session_completed') || batch.types.has('session_closed')) await reload();
    },
  };
}

export async function render(view, args = []) {
  if (args.length) return detail(view, args[0]);
  const q = h('input', { type: 'search', name: 'q', placeholder: 'e-mail contains…', autocomplete: 'off' });
  const since = h('input', { type: 'datetime-local', name: 'since' });
  const table = pagedTable({
    limit: 50,
    empty: 'No driver matches: drivers sign up in the app.',
    load: (p) => get('/api/drivers', { ...p, q: q.value.trim(), since: fromLocalInput(since.value) }),
    rowAttrs: (d) => ({ dataset: { driver: d.id } }),
    columns: [
      { label: 'E-mail', cell: (d) => driverLink(d.id, d.email) },
      { label: 'Driver', cell: (d) => h('span', { class: 'mono' }, d.id) },
      { label: 'Pays by', cell: paying },
      { label: 'Since', cell: (d) => time(d.created_at) },
    ],
  });
  let debounce;
  const again = () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => table.reset(), 250);
  };
  q.addEventListener('input', again);
  since.addEventListener('change', again);
  fill(
    view,
    h('div', { class: 'page-head' }, h('h1', {}, 'Drivers')),
    card(null, h('form', { class: 'toolbar', role: 'search', 'data-live-keep': true, onsubmit: (e) => (e.preventDefault(), table.reset()) }, field('Search', q), field('Signed up from', since)), table.el),
  );
  await table.reset();
  return { refresh: () => table.refresh(), dispose: () => clearTimeout(debounce) };
}
