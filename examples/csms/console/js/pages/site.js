// Smart charging: the site's limits (GET/PUT /api/site/limits) and its
// planned power (the sum of the shares the CSMS sent) against the power
// delivered (the sessions' meter readings) over the last hours
// (GET /api/site/power).

import { get, put } from '../api.js';
import { h, fill, card, field, select, facts, toast, describe, busy, trackEditing } from '../ui.js';
import { timeChart } from '../chart.js';

const kw = (w) => (w == null ? null : Number(w) / 1000);

export async function render(view) {
  const range = select([['60', 'last hour'], ['360', 'last 6 hours'], ['1440', 'last day'], ['10080', 'last week']], '60', { name: 'minutes' });
  const chartBox = h('div', { class: 'chart', id: 'site-power-chart' });
  const now = h('div', {});
  const limitW = h('input', { type: 'number', name: 'limit_w', min: 1, step: 1, required: true });
  const phaseA = h('input', { type: 'number', name: 'phase_limit_a', min: 1, step: 1 });
  const evseW = h('input', { type: 'number', name: 'evse_max_w', min: 1, step: 1 });
  const save = h('button', { type: 'submit' }, 'Set limits');
  const form = h(
    'form',
    { class: 'toolbar', id: 'site-limits' },
    field('Site limit (W)', limitW),
    field('Per phase (A)', phaseA, 'optional'),
    field('Per EVSE (W)', evseW, 'optional'),
    save,
  );
  const done = trackEditing(form);
  form.addEventListener(
    'submit',
    busy(save, async () => {
      const body = { limit_w: Number(limitW.value) };
      if (phaseA.value) body.phase_limit_a = Number(phaseA.value);
      if (evseW.value) body.evse_max_w = Number(evseW.value);
      try {
        await put('/api/site/limits', body);
        done();
        toast('Limits set: the shares are pushed to the stations.');
        await load();
      } catch (e) {
        toast(describe(e), 'error');
      }
    }),
  );

  async function load() {
    const p = await get('/api/site/power', { minutes: range.value });
    const l = p.limits;
    if (l && form.dataset.editing !== 'yes') {
      limitW.value = l.limit_w;
      phaseA.value = l.phase_limit_a ?? '';
      evseW.value = l.evse_max_w ?? '';
    }
    const last = p.items[p.items.length - 1];
    fill(
      now,
      facts([
        ['Site limit', l ? `${kw(l.limit_w)} kW` + (l.phase_limit_a ? `, ${l.phase_limit_a} A per phase` : '') : 'none (smart charging off)'],
        ['Planned now', last ? `${kw(last.planned_w)} kW` : null],
        ['Delivered now', p.delivered_w != null ? `${kw(p.delivered_w)} kW` : null],
      ]),
    );
    const xs = p.items.map((s) => Date.parse(s.at) / 1000);
    timeChart(chartBox, {
      title: 'Site power',
      xs,
      series: p.items.length
        ? [
            { label: 'Planned', unit: 'kW', values: p.items.map((s) => kw(s.planned_w)) },
            { label: 'Delivered', unit: 'kW', values: p.items.map((s) => kw(s.delivered_w)) },
            { label: 'Limit', unit: 'kW', values: p.items.map((s) => kw(s.limit_w)) },
          ]
        : [],
    });
  }

  range.addEventListener('change', () => load());
  fill(
    view,
    h('div', { class: 'page-head' }, h('h1', {}, 'Site power')),
    card(
      null,
      h('p', { class: 'hint' }, 'The site\u2019s limit is shared by the active sessions (fleet vehicles first); every change is pushed to the stations at once and checked against their composite schedules.'),
      now,
      form,
    ),
    card('Planned vs delivered', h('form', { class: 'toolbar', 'data-live-keep': true }, field('Show', range)), chartBox),
  );
  await load();
  return { refresh: () => load() };
}
