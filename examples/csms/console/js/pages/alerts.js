// Alerts in words (their `message`), open or cleared, by station and time;
// clearing one.

import { get, post, seg } from '../api.js';
import { h, fill, card, pagedTable, pill, field, select, toast, objectView } from '../ui.js';
import { time, words, fromLocalInput } from '../format.js';

/** Columns of an alerts table; `showStation` false on a station's page. */
export function alertColumns(onCleared, showStation = true) {
  return [
    { label: 'Raised', cell: (a) => time(a.raised_at) },
    showStation ? { label: 'Station', cell: (a) => (a.station ? h('a', { href: '#/stations/' + encodeURIComponent(a.station) }, a.station) : '—') } : null,
    { label: 'Kind', cell: (a) => pill(words(a.kind), a.cleared_at ? 'cleared' : 'open') },
    {
      label: 'What happened',
      cell: (a) => [
        h('span', { class: 'alert-message' }, a.message || words(a.kind)),
        a.detail && typeof a.detail === 'object' && Object.keys(a.detail).length ? h('details', {}, h('summary', {}, 'Details'), objectView(a.detail)) : null,
      ],
    },
    { label: 'State', cell: (a) => (a.cleared_at ? `cleared ${time(a.cleared_at)}` : 'open') },
    {
      label: 'Actions',
      cell: (a) =>
        a.cleared_at
          ? ''
          : h(
              'button',
              {
                type: 'button',
                class: 'secondary small',
                'aria-label': 'Clear alert ' + (a.message || a.kind),
                onclick: async () => {
                  try {
                    await post(`/api/alerts/${seg(a.id)}/clear`, undefined);
                    toast('Alert cleared.');
                    onCleared?.();
                  } catch (e) {
                    toast('Could not clear: ' + e.message, 'error');
                  }
                },
              },
              'Clear',
            ),
    },
  ].filter(Boolean);
}

export async function render(view) {
  const status = select([['open', 'open'], ['cleared', 'cleared'], ['', 'any']], 'open', { name: 'status' });
  const station = h('input', { type: 'search', name: 'station', placeholder: 'identity', autocomplete: 'off' });
  const since = h('input', { type: 'datetime-local', name: 'since' });
  const table = pagedTable({
    limit: 50,
    empty: 'No alert matches.',
    load: (p) => get('/api/alerts', { ...p, status: status.value, station: station.value.trim(), since: fromLocalInput(since.value) }),
    rowAttrs: (a) => ({ dataset: { alert: a.id, kind: a.kind } }),
    columns: alertColumns(() => table.refresh()),
  });
  let debounce;
  const again = () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => table.reset(), 250);
  };
  station.addEventListener('input', again);
  status.addEventListener('change', again);
  since.addEventListener('change', again);
  fill(
    view,
    h('div', { class: 'page-head' }, h('h1', {}, 'Alerts')),
    card(null, h('form', { class: 'toolbar', role: 'search', 'data-live-keep': true, onsubmit: (e) => (e.preventDefault(), table.reset()) }, field('State', status), field('Station', station), field('Raised from', since)), table.el),
  );
  await table.reset();
  return { refresh: () => table.refresh(), dispose: () => clearTimeout(debounce) };
}
