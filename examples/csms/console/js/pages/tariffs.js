// Tariffs (OCPI 2.2.1): list, and an editor of price components (ENERGY,
// TIME, FLAT, PARKING_TIME: price, VAT, step size) and restrictions, with
// a live price preview for a sample session from /api/tariffs/preview.

import { get, put, del, post, seg, hasRoute } from '../api.js';
import { h, fill, card, pagedTable, field, select, confirm, errorBox, toast, busy, trackEditing } from '../ui.js';
import { time, money, toLocalInput, fromLocalInput } from '../format.js';

const KINDS = [
  ['ENERGY', 'Energy (per kWh)'],
  ['TIME', 'Charging time (per hour)'],
  ['FLAT', 'Flat fee (per session)'],
  ['PARKING_TIME', 'Parking time (per hour)'],
];
const UNIT = { ENERGY: '/kWh', TIME: '/h', FLAT: '', PARKING_TIME: '/h parked' };
const STEP_HINT = { ENERGY: 'billed in steps of this many Wh', TIME: 'billed in steps of this many seconds', FLAT: 'not used for a flat fee', PARKING_TIME: 'billed in steps of this many seconds' };
const DAYS = ['MONDAY', 'TUESDAY', 'WEDNESDAY', 'THURSDAY', 'FRIDAY', 'SATURDAY', 'SUNDAY'];

/** "€0.30/kWh + €1.00" for a tariff's first element. */
export function summary(t) {
  return (t.elements || [])
    .map((e) => (e.price_components || []).map((c) => money(c.price, t.currency) + (UNIT[c.type] ?? '') + (c.vat ? ` (+${c.vat} % VAT)` : '')).join(' + ') + (e.restrictions && Object.keys(e.restrictions).length ? ' [restricted]' : ''))
    .join('; ');
}

function componentRow(c, onChange) {
  const type = select(KINDS, c?.type || 'ENERGY', { name: 'type' });
  const price = h('input', { name: 'price', type: 'number', min: '0', step: 'any', required: true, value: c?.price ?? '', inputmode: 'decimal' });
  const vat = h('input', { name: 'vat', type: 'number', min: '0', max: '100', step: 'any', value: c?.vat ?? '', inputmode: 'decimal' });
  const step = h('input', { name: 'step_size', type: 'number', min: '1', step: '1', required: true, value: c?.step_size ?? 1, inputmode: 'numeric' });
  const stepField = field('Step size', step, STEP_HINT[type.value]);
  type.addEventListener('change', () => (stepField.querySelector('.hint').textContent = STEP_HINT[type.value]));
  const remove = h('button', { type: 'button', class: 'secondary small' }, 'Remove');
  const row = h('div', { class: 'form-grid component' }, field('Component', type), field('Price excl. VAT', price), field('VAT %', vat), stepField, h('div', { class: 'actions' }, remove));
  remove.addEventListener('click', () => {
    row.remove();
    onChange();
  });
  row.value = () => ({ type: type.value, price: Number(price.value), ...(vat.value !== '' ? { vat: Number(vat.value) } : {}), step_size: Number(step.value || 1) });
  return row;
}

function elementBox(e, onChange) {
  const comps = h('div', { class: 'stack' });
  const addComp = (c) => comps.append(componentRow(c, onChange));
  (e?.price_components?.length ? e.price_components : [null]).forEach(addComp);
  const r = e?.restrictions || {};
  const inp = (name, attrs) => h('input', { name, value: r[name] ?? '', ...attrs });
  const startTime = inp('start_time', { type: 'time' });
  const endTime = inp('end_time', { type: 'time' });
  const minKwh = inp('min_kwh', { type: 'number', min: '0', step: 'any' });
  const maxKwh = inp('max_kwh', { type: 'number', min: '0', step: 'any' });
  const minDur = inp('min_duration', { type: 'number', min: '0', step: '1' });
  const maxDur = inp('max_duration', { type: 'number', min: '0', step: '1' });
  const minPow = inp('min_power', { type: 'number', min: '0', step: 'any' });
  const maxPow = inp('max_power', { type: 'number', min: '0', step: 'any' });
  const days = DAYS.map((d) => h('label', { class: 'inline' }, h('input', { type: 'checkbox', name: 'day', value: d, checked: (r.day_of_week || []).includes(d) }), d.slice(0, 3).toLowerCase()));
  const remove = h('button', { type: 'button', class: 'secondary small' }, 'Remove this element');
  const box = h(
    'fieldset',
    { class: 'element' },
    h('legend', {}, 'Tariff element'),
    comps,
    h('div', { class: 'actions' }, h('button', { type: 'button', class: 'secondary small', onclick: () => (addComp(null), onChange()) }, '+ Add price component')),
    h(
      'details',
      { open: Object.keys(r).length > 0 },
      h('summary', {}, 'Restrictions (when this element applies)'),
      h(
        'div',
        { class: 'form-grid' },
        field('From time of day', startTime),
        field('Until time of day', endTime),
        field('Min. energy (kWh)', minKwh),
        field('Max. energy (kWh)', maxKwh),
        field('Min. duration (s)', minDur),
        field('Max. duration (s)', maxDur),
        field('Min. power (kW)', minPow),
        field('Max. power (kW)', maxPow),
      ),
      h('div', { class: 'kv', role: 'group', 'aria-label': 'Days of the week' }, days),
    ),
    h('div', { class: 'actions' }, remove),
  );
  remove.addEventListener('click', () => {
    box.remove();
    onChange();
  });
  box.value = () => {
    const restrictions = {};
    if (startTime.value) restrictions.start_time = startTime.value;
    if (endTime.value) restrictions.end_time = endTime.value;
    for (const i of [minKwh, maxKwh, minDur, maxDur, minPow, maxPow]) if (i.value !== '') restrictions[i.name] = Number(i.value);
    const dow = days.map((l) => l.querySelector('input')).filter((c) => c.checked).map((c) => c.value);
    if (dow.length) restrictions.day_of_week = dow;
    const out = { price_components: [...comps.querySelectorAll('.component')].map((c) => c.value()) };
    if (Object.keys(restrictions).length) out.restrictions = restrictions;
    return out;
  };
  return box;
}

async function editor(view, id) {
  const isNew = !id;
  let t = null;
  if (!isNew) {
    try {
      t = await get('/api/tariffs/' + seg(id));
    } catch (e) {
      if (e.status !== 404) {
        fill(view, errorBox(e));
        return {};
      }
    }
  }
  const canDelete = await hasRoute('/api/tariffs/{id}', 'delete');
  const idInput = h('input', { name: 'id', required: true, maxlength: 36, pattern: '[A-Za-z0-9._-]+', value: id || 'default', disabled: !isNew, autocomplete: 'off' });
  const currency = h('input', { name: 'currency', required: true, minlength: 3, maxlength: 3, pattern: '[A-Z]{3}', value: t?.currency || 'EUR', size: 4 });
  const elements = h('div', { class: 'stack' });
  const previewBox = h('div', { class: 'preview', 'aria-live': 'polite', id: 'tariff-preview' });
  const err = h('div');
  const save = h('button', { type: 'submit' }, 'Save tariff');
  const pStart = h('input', { type: 'datetime-local', name: 'sample-start', value: toLocalInput(new Date(Date.now() - 3600e3).toISOString()) });
  const pEnd = h('input', { type: 'datetime-local', name: 'sample-end', value: toLocalInput() });
  const pKwh = h('input', { type: 'number', name: 'sample-kwh', min: '0', step: 'any', value: '20' });
  let timer;
  const changed = () => {
    clearTimeout(timer);
    timer = setTimeout(preview, 300);
  };
  const addElement = (e) => elements.append(elementBox(e, changed));
  (t?.elements?.length ? t.elements : [null]).forEach(addElement);

  const tariffBody = () => ({ currency: currency.value.trim(), elements: [...elements.querySelectorAll('.element')].map((e) => e.value()) });

  let seq = 0;
  async function preview() {
    const my = ++seq;
    const start = fromLocalInput(pStart.value);
    const end = fromLocalInput(pEnd.value);
    if (!start || !end) {
      fill(previewBox, h('p', { class: 'muted' }, 'Give the sample session a start and an end.'));
      return;
    }
    try {
      const p = await post('/api/tariffs/preview', { tariff: tariffBody(), session: { start, end, energy_wh: Math.round(Number(pKwh.value || 0) * 1000) } });
      if (my !== seq) return;
      fill(
        previewBox,
        h('div', { class: 'big', dataset: { total: p.total_incl_vat } }, money(p.total_incl_vat, p.currency), h('span', { class: 'muted' }, ' incl. VAT')),
        h('div', {}, money(p.total_excl_vat, p.currency), ' excl. VAT'),
        h('small', { class: 'muted' }, `for ${Number(pKwh.value || 0).toLocaleString()} kWh from ${time(start)} to ${time(end)}`),
      );
    } catch (e) {
      if (my !== seq) return;
      fill(previewBox, h('p', { class: 'error', role: 'alert' }, e.status === 400 ? 'This tariff cannot be used: ' + e.message : e.message));
    }
  }

  const form = h(
    'form',
    { class: 'stack', id: 'tariff-form' },
    h('div', { class: 'form-grid' }, field('Tariff id', idInput, '"default" prices every session'), field('Currency (ISO 4217)', currency)),
    elements,
    h('div', { class: 'actions' }, h('button', { type: 'button', class: 'secondary', onclick: () => (addElement(null), changed()) }, '+ Add element')),
    err,
    h('div', { class: 'actions' }, save, h('a', { href: '#/tariffs' }, 'Back to tariffs')),
  );
  const done = trackEditing(form);
  form.addEventListener('input', changed);
  form.addEventListener('change', changed);
  [pStart, pEnd, pKwh].forEach((i) => i.addEventListener('input', changed));
  form.addEventListener(
    'submit',
    busy(save, async () => {
      if (!form.reportValidity()) return;
      const tid = isNew ? idInput.value.trim() : id;
      try {
        await put('/api/tariffs/' + seg(tid), tariffBody());
      } catch (e) {
        fill(err, errorBox(e));
        return;
      }
      fill(err);
      done();
      toast(`Tariff ${tid} saved.`);
      if (isNew) location.hash = '#/tariffs/' + encodeURIComponent(tid);
    }),
  );
  const delButton =
    !isNew && canDelete && t
      ? h(
          'button',
          {
            type: 'button',
            class: 'danger',
            onclick: async () => {
              if (!(await confirm(`Delete tariff ${id}?`, id === 'default' ? 'Sessions that end without a default tariff get no CDR and no price.' : 'It is no longer offered to roaming partners.', 'Delete tariff'))) return;
              try {
                await del('/api/tariffs/' + seg(id));
                toast(`Tariff ${id} deleted.`);
                location.hash = '#/tariffs';
              } catch (e) {
                toast(e.message, 'error');
              }
            },
          },
          'Delete',
        )
      : null;
  fill(
    view,
    h('div', { class: 'page-head' }, h('h1', {}, isNew ? 'New tariff' : t ? `Tariff ${id}` : `New tariff ${id}`), delButton),
    h('div', { class: 'grid tariff' }, card('Prices', form), card('Price preview', h('p', { class: 'muted' }, 'What a sample session would cost under the tariff as edited (not saved yet).'), h('form', { class: 'form-grid', 'data-live-keep': true, onsubmit: (e) => e.preventDefault() }, field('Start', pStart), field('End', pEnd), field('Energy (kWh)', pKwh)), previewBox)),
  );
  preview();
  return { dispose: () => clearTimeout(timer) };
}

export async function render(view, args) {
  if (args[0] === 'new') return editor(view, null);
  if (args.length) return editor(view, args[0]);
  const table = pagedTable({
    limit: 50,
    empty: 'No tariff yet: sessions are not priced until a "default" tariff exists.',
    load: (p) => get('/api/tariffs', p),
    rowAttrs: (t) => ({ dataset: { tariff: t.id } }),
    columns: [
      { label: 'Tariff', cell: (t) => h('a', { href: '#/tariffs/' + encodeURIComponent(t.id) }, t.id) },
      { label: 'Currency', cell: (t) => t.currency },
      { label: 'Prices (excl. VAT)', cell: summary },
      { label: 'Updated', cell: (t) => time(t.last_updated) },
    ],
  });
  fill(view, h('div', { class: 'page-head' }, h('h1', {}, 'Tariffs'), h('a', { href: '#/tariffs/new', class: 'button' }, '+ New tariff')), card(null, table.el));
  await table.reset();
  return { refresh: () => table.refresh() };
}
