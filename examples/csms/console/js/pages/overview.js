// Overview: the network at a glance (counters from /api/overview) and
// energy and revenue per day (charts from /api/stats/daily).

import { get } from '../api.js';
import { h, fill, card, errorBox, pill } from '../ui.js';
import { kw, kwh, money, day, time, sessionDuration } from '../format.js';
import { timeChart } from '../chart.js';

function tile(label, value, sub, name) {
  return h('div', { class: 'tile', dataset: { tile: name } }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value), sub ? h('div', { class: 'sub' }, sub) : null);
}

/** Local midnight of a YYYY-MM-DD, in Unix seconds. */
function dayStart(ymd) {
  const [y, m, d] = ymd.split('-').map(Number);
  return new Date(y, m - 1, d).getTime() / 1000;
}

export async function render(view) {
  const tiles = h('div', { class: 'tiles', 'aria-live': 'polite' });
  const energyBox = h('div', { class: 'chart', id: 'chart-energy' });
  const revenueBox = h('div', { class: 'chart', id: 'chart-revenue' });
  const sessionsBox = h('div');
  const alertsBox = h('div');
  const dailyBox = h('div');
  fill(
    view,
    h('div', { class: 'page-head' }, h('h1', {}, 'Overview')),
    tiles,
    h('div', { class: 'grid' }, card('Energy per day', energyBox), card('Revenue per day (incl. VAT)', revenueBox)),
    h('div', { class: 'grid' }, card('Charging now', sessionsBox), card('Open alerts', alertsBox)),
    card('Days', dailyBox),
  );

  async function counters() {
    try {
      const o = await get('/api/overview');
      const revenue = (o.revenue_today || []).map((r) => money(r.amount, r.currency)).join(' + ') || money(0, 'EUR');
      fill(
        tiles,
        tile('Stations online', `${o.stations_online.toLocaleString()} / ${o.stations_total.toLocaleString()}`, `${(o.stations_total - o.stations_online).toLocaleString()} offline`, 'stations'),
        tile('Active sessions', o.sessions_active.toLocaleString(), null, 'sessions'),
        tile('Power now', kw(o.power_w), 'drawn by active sessions', 'power'),
        tile('Energy today', kwh(o.energy_today_wh), 'delivered today', 'energy'),
        tile('Revenue today', revenue, 'incl. VAT', 'revenue'),
      );
    } catch (e) {
      fill(tiles, errorBox(e));
    }
  }

  async function daily() {
    let rows;
    try {
      rows = await get('/api/stats/daily');
    } catch (e) {
      fill(energyBox, errorBox(e));
      fill(revenueBox);
      return;
    }
    // the last 30 days, a bar each (no bar where nothing was charged)
    const days = [];
    const pad = (n) => String(n).padStart(2, '0');
    for (let i = 29; i >= 0; i--) {
      const d = new Date(Date.now() - i * 86400e3);
      days.push(`${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`);
    }
    for (const r of rows) if (!days.includes(r.day)) days.push(r.day);
    days.sort();
    const xs = days.map(dayStart);
    const energy = days.map((d) => rows.filter((r) => r.day === d).reduce((a, r) => a + Number(r.energy_kwh), 0));
    const currencies = [...new Set(rows.map((r) => r.currency))].sort();
    if (!rows.length) {
      timeChart(energyBox, { title: 'Energy delivered', xs: [], series: [] });
      timeChart(revenueBox, { title: 'Revenue', xs: [], series: [] });
    } else {
    timeChart(energyBox, { title: 'Energy delivered', xs, days: true, xLabel: 'Day', series: [{ label: 'Energy', unit: 'kWh', values: energy, bars: true }] });
    timeChart(revenueBox, {
      title: 'Revenue',
      xs,
      days: true,
      xLabel: 'Day',
      series: currencies.map((c) => ({ label: 'Revenue ' + c, unit: c, values: days.map((d) => Number(rows.find((r) => r.day === d && r.currency === c)?.revenue_incl_vat ?? 0)), bars: true })),
    });
    }
    fill(
      dailyBox,
      rows.length
        ? h(
            'table',
            { class: 'list' },
            h('thead', {}, h('tr', {}, h('th', {}, 'Day'), h('th', { class: 'num' }, 'Sessions'), h('th', { class: 'num' }, 'Energy'), h('th', { class: 'num' }, 'Revenue incl. VAT'))),
            h(
              'tbody',
              {},
              rows.slice(0, 31).map((r) => h('tr', { dataset: { day: r.day } }, h('td', {}, day(r.day)), h('td', { class: 'num' }, r.sessions.toLocaleString()), h('td', { class: 'num' }, Number(r.energy_kwh).toLocaleString(undefined, { maximumFractionDigits: 3 }) + ' kWh'), h('td', { class: 'num' }, money(r.revenue_incl_vat, r.currency)))),
            ),
          )
        : h('p', { class: 'muted' }, 'No completed, priced sessions yet.'),
    );
  }

  async function active() {
    try {
      const page = await get('/api/sessions', { status: 'Active', limit: 10 });
      fill(
        sessionsBox,
        page.items.length
          ? h(
              'table',
              { class: 'list' },
              h('thead', {}, h('tr', {}, h('th', {}, 'Station'), h('th', {}, 'Token'), h('th', {}, 'Started'), h('th', { class: 'num' }, 'Duration'), h('th', { class: 'num' }, 'Energy'))),
              h(
                'tbody',
                {},
                page.items.map((s) => h('tr', { dataset: { session: s.id } }, h('td', {}, h('a', { href: '#/stations/' + encodeURIComponent(s.station_id) }, s.station_id)), h('td', {}, s.id_token || '—'), h('td', {}, time(s.started_at)), h('td', { class: 'num' }, sessionDuration(s)), h('td', { class: 'num' }, kwh(s.energy_wh)))),
              ),
            )
          : h('p', { class: 'muted' }, 'No session is active.'),
        page.total > page.items.length ? h('p', {}, h('a', { href: '#/sessions' }, `All ${page.total.toLocaleString()} active sessions →`)) : null,
      );
    } catch (e) {
      fill(sessionsBox, errorBox(e));
    }
  }

  async function alerts() {
    try {
      const page = await get('/api/alerts', { status: 'open', limit: 5 });
      fill(
        alertsBox,
        page.items.length
          ? h(
              'ul',
              { class: 'plain' },
              page.items.map((a) => h('li', {}, pill(a.kind, 'open'), ' ', a.station ? [h('a', { href: '#/stations/' + encodeURIComponent(a.station) }, a.station), ': '] : null, a.message || a.kind, h('span', { class: 'muted' }, ' — ' + time(a.raised_at)))),
            )
          : h('p', { class: 'muted' }, 'No open alert.'),
        page.total > page.items.length ? h('p', {}, h('a', { href: '#/alerts' }, `All ${page.total.toLocaleString()} open alerts →`)) : null,
      );
    } catch (e) {
      fill(alertsBox, errorBox(e));
    }
  }

  const all = () => Promise.all([counters(), daily(), active(), alerts()]);
  await all();
  return {
    refresh: async (batch) => {
      const tasks = [counters(), active()];
      if (batch.types.has('session_completed') || batch.types.has('session_closed')) tasks.push(daily());
      if ([...batch.types].some((t) => t.startsWith('alert'))) tasks.push(alerts());
      await Promise.all(tasks);
    },
  };
}
