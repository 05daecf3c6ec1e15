// Charts with uPlot (vendor/uPlot.iife.min.js, loaded by the page as a
// classic script: window.uPlot). Every chart has a time axis in local time
// and a value axis with its unit.

import { h, fill } from './ui.js';

const COLORS = ['#2563eb', '#16a34a', '#d97706', '#9333ea', '#dc2626', '#0891b2'];

/**
 * A chart in `box`: xs are Unix seconds; series are
 * {label, unit, values, bars?}. `xLabel` names the time axis. Draws a
 * "no data" line instead when there is nothing to show. Returns the uPlot
 * instance (or null).
 */
export function timeChart(box, { title, xs, series, xLabel = 'Time', height = 220, days = false }) {
  if (box._plot) {
    box._plot.destroy();
    box._plot = null;
  }
  if (box._observer) box._observer.disconnect();
  if (!xs.length || !series.length) {
    fill(box, h('p', { class: 'chart-empty' }, title ? `${title}: no data yet.` : 'No data yet.'));
    return null;
  }
  fill(box);
  const uPlot = window.uPlot;
  const units = [...new Set(series.map((s) => s.unit))];
  const scaleOf = (unit) => 'u' + units.indexOf(unit);
  const fmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 3 });
  const dayFmt = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short' });
  const secFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  const minFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
  const axes = [
    {
      label: xLabel,
      space: 70,
      values: (u, vals) => {
        const span = (u.scales.x.max ?? 0) - (u.scales.x.min ?? 0);
        const f = days ? dayFmt : span < 600 ? secFmt : minFmt;
        return vals.map((v) => f.format(new Date(v * 1000)));
      },
    },
    ...units.map((unit, i) => ({
      scale: scaleOf(unit),
      label: unit,
      side: i === 0 ? 3 : 1,
      grid: { show: i === 0 },
      size: 64,
      values: (u, vals) => vals.map((v) => (v == null ? '' : fmt.format(v))),
    })),
  ];
  const bars = uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.6, 64] }) : undefined;
  const opts = {
    title,
    width: Math.max(280, box.clientWidth || 600),
    height,
    scales: Object.fromEntries([['x', { time: true, range: (self, min, max) => (days || min == null || max == null ? [min, max] : max - min < 60 ? [max - 60, max] : [min, max]) }], ...units.map((u) => [scaleOf(u), { auto: true, range: (self, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1] }])]),
    axes,
    legend: { live: true },
    cursor: { drag: { x: false, y: false } },
    series: [
      {
        label: days ? 'Day' : 'Time',
        value: (u, v) => (v == null ? '—' : days ? new Date(v * 1000).toLocaleDateString() : new Date(v * 1000).toLocaleString()),
      },
      ...series.map((s, i) => ({
        label: s.label,
        scale: scaleOf(s.unit),
        stroke: COLORS[i % COLORS.length],
        fill: s.bars ? COLORS[i % COLORS.length] + 'cc' : COLORS[i % COLORS.length] + '22',
        width: s.bars ? 1 : 2,
        spanGaps: true,
        paths: s.bars ? bars : undefined,
        points: { show: !s.bars && xs.length < 60 },
        value: (u, v) => (v == null ? '—' : fmt.format(v) + ' ' + s.unit),
      })),
    ],
  };
  const plot = new uPlot(opts, [xs, ...series.map((s) => s.values)], box);
  box._plot = plot;
  if (window.ResizeObserver) {
    box._observer = new ResizeObserver(() => {
      const w = Math.max(280, box.clientWidth);
      if (Math.abs(w - plot.width) > 4) plot.setSize({ width: w, height });
    });
    box._observer.observe(box);
  }
  return plot;
}
