// Predictive maintenance: every connector's health score, worst first, with
// the signals behind it in words (GET /api/maintenance).

import { get } from '../api.js';
import { h, fill, card, pagedTable, pill, field, select } from '../ui.js';

const STATE_WORDS = { ok: 'in order', watch: 'watch', at_risk: 'at risk' };

function scoreBar(score) {
  return h(
    'span',
    { class: 'score', title: `health score ${score} of 100` },
    h('meter', { min: 0, max: 100, low: 50, high: 80, optimum: 100, value: score }),
    ` ${score}`,
  );
}

export async function render(view) {
  const which = select([['flagged', 'watch and at risk'], ['all', 'every connector']], 'flagged', { name: 'which' });
  const table = pagedTable({
    limit: 50,
    empty: 'Every connector is in order.',
    load: (p) => get('/api/maintenance', { ...p, flagged: which.value === 'flagged' }),
    rowAttrs: (c) => ({ dataset: { station: c.station, state: c.state } }),
    columns: [
      { label: 'Station', cell: (c) => h('a', { href: '#/stations/' + encodeURIComponent(c.station) }, c.station) },
      { label: 'EVSE / connector', cell: (c) => `${c.evse} / ${c.connector}` },
      { label: 'Score', cell: (c) => scoreBar(c.score) },
      { label: 'State', cell: (c) => pill(STATE_WORDS[c.state] || c.state, c.state === 'at_risk' ? 'open' : c.state === 'watch' ? 'pending' : 'ok') },
      { label: 'Why', cell: (c) => (c.reasons.length ? h('ul', { class: 'plain' }, c.reasons.map((r) => h('li', {}, r))) : '—') },
      { label: 'Sessions (recent)', class: 'num', cell: (c) => c.sessions.toLocaleString() },
      { label: 'Last error code', cell: (c) => c.last_error_code || '—' },
    ],
  });
  which.addEventListener('change', () => table.reset());
  fill(
    view,
    h('div', { class: 'page-head' }, h('h1', {}, 'Maintenance')),
    card(
      null,
      h('p', { class: 'hint' }, 'A score per connector from its faults, failed starts, aborted sessions, its station\u2019s unplanned reboots and lost connections, its temperature and its supply voltage (out of band, or drifting), each against the fleet. A connector at risk has raised a maintenance alert.'),
      h('form', { class: 'toolbar', 'data-live-keep': true, onsubmit: (e) => (e.preventDefault(), table.reset()) }, field('Show', which)),
      table.el,
    ),
  );
  await table.reset();
  return { refresh: () => table.refresh() };
}
