// Periodic event streams (OCPP 2.1): the streams a station opened, and one
// stream's values plotted as a time series (GET
// /api/stations/{id}/event-streams, GET .../event-streams/{stream}/values).
// #/streams, #/streams/{station}, #/streams/{station}/{stream}.

import { get, seg } from '../api.js';
import { h, fill, card, field, staticTable, pill, errorBox } from '../ui.js';
import { time } from '../format.js';
import { timeChart } from '../chart.js';

/** How far back the chart goes, seconds. */
const WINDOW_S = 3600;

export async function render(view, args) {
  const [station, stream] = args;
  const input = h('input', { name: 'station', value: station || '', required: true, autocomplete: 'off', spellcheck: false });
  const list = h('div', { id: 'stream-list' });
  const summary = h('p', { class: 'hint', id: 'stream-summary' });
  const chartBox = h('div', { class: 'chart', id: 'stream-chart' });
  fill(
    view,
    h('div', { class: 'page-head' }, h('h1', {}, 'Event streams')),
    card(
      null,
      h('p', { class: 'hint' }, 'The periodic event streams a 2.1 station opened (a monitored variable it reports every few seconds, NotifyPeriodicEventStream), kept as time series.'),
      h(
        'form',
        {
          class: 'toolbar',
          'data-live-keep': true,
          onsubmit: (e) => {
            e.preventDefault();
            location.hash = '#/streams/' + seg(input.value.trim());
          },
        },
        field('Station', input),
        h('button', { type: 'submit' }, 'Show its streams'),
      ),
      list,
    ),
    stream ? card(`Stream ${stream} of ${station}`, summary, chartBox) : '',
  );

  async function loadList() {
    if (!station) return fill(list, h('p', { class: 'hint' }, 'Choose a station.'));
    try {
      const { items } = await get('/api/stations/' + seg(station) + '/event-streams');
      fill(
        list,
        staticTable({
          empty: 'This station has opened no stream.',
          rowAttrs: (s) => ({ dataset: { stream: s.stream_id } }),
          columns: [
            { label: 'Stream', cell: (s) => h('a', { href: `#/streams/${seg(station)}/${s.stream_id}` }, String(s.stream_id)) },
            { label: 'Monitor', class: 'num', cell: (s) => String(s.monitor_id) },
            { label: 'Every', cell: (s) => (s.interval_s ? `${s.interval_s} s` : '—') },
            { label: 'State', cell: (s) => (s.closed_at ? pill('closed', 'pending') : pill('open', 'ok')) },
            { label: 'Opened', cell: (s) => time(s.opened_at) },
            { label: 'Values kept', class: 'num', cell: (s) => s.samples.toLocaleString() },
          ],
          rows: items,
        }),
      );
    } catch (e) {
      fill(list, errorBox(e));
    }
  }

  async function loadChart() {
    if (!stream) return;
    try {
      const since = new Date(Date.now() - WINDOW_S * 1000).toISOString();
      const { values } = await get(`/api/stations/${seg(station)}/event-streams/${seg(stream)}/values`, { since, limit: 10000 });
      const points = values.map((v) => [Date.parse(v.at) / 1000, Number(v.value)]).filter(([t, x]) => Number.isFinite(t) && Number.isFinite(x));
      chartBox.dataset.points = String(points.length);
      fill(summary, points.length ? `${points.length} values in the last hour; the latest ${points[points.length - 1][1]} at ${time(values[values.length - 1].at)}.` : 'No values in the last hour.');
      timeChart(chartBox, {
        title: `Stream ${stream}`,
        xs: points.map((p) => p[0]),
        series: [{ label: 'Value', unit: 'value', values: points.map((p) => p[1]) }],
        xLabel: 'Time (local)',
      });
    } catch (e) {
      fill(summary, errorBox(e));
    }
  }

  await Promise.all([loadList(), loadChart()]);
  return { refresh: () => Promise.all([loadList(), loadChart()]) };
}
