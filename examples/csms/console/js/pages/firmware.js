// Firmware: upload an image, start a campaign (UpdateFirmware to chosen or
// all connected stations), and follow each station's status.

import { get, post, api, seg } from '../api.js';
import { h, fill, card, pagedTable, pill, field, errorBox, toast, busy, trackEditing } from '../ui.js';
import { time } from '../format.js';

function stationStates(c) {
  const list = c.stations || [];
  if (!list.length) return '—';
  return h(
    'ul',
    { class: 'plain' },
    list.slice(0, 20).map((s) => {
      const word = s.status || (s.requested ? 'Requested' : 'Not sent: ' + (s.reason || 'refused'));
      const cls = /fail|invalid|not sent/i.test(word) ? 'bad' : /installed/i.test(word) ? 'ok' : 'pending';
      return h('li', {}, h('a', { href: '#/stations/' + encodeURIComponent(s.station) }, s.station), ' ', pill(word, cls));
    }),
    list.length > 20 ? h('li', { class: 'muted' }, `and ${list.length - 20} more`) : null,
  );
}

export async function render(view) {
  const campaigns = pagedTable({
    limit: 20,
    empty: 'No campaign yet.',
    load: (p) => get('/api/firmware-campaigns', p),
    rowAttrs: (c) => ({ dataset: { campaign: c.id } }),
    columns: [
      { label: 'Campaign', cell: (c) => String(c.id) },
      { label: 'Started', cell: (c) => time(c.started_at) },
      { label: 'Image', cell: (c) => h('span', { class: 'mono' }, c.location) },
      { label: 'Stations', cell: stationStates },
    ],
  });

  // upload
  const file = h('input', { type: 'file', name: 'file', required: true });
  const name = h('input', { name: 'name', required: true, pattern: '[A-Za-z0-9._-]+', maxlength: 128, autocomplete: 'off' });
  file.addEventListener('change', () => {
    if (file.files[0] && !name.value) name.value = file.files[0].name.replace(/[^A-Za-z0-9._-]/g, '_');
  });
  const upOut = h('div', { 'aria-live': 'polite' });
  const up = h('button', { type: 'submit' }, 'Upload');
  const upForm = h('form', { class: 'stack' }, field('Image file', file), field('Stored as', name, 'letters, digits, dot, dash, underscore'), h('div', { class: 'actions' }, up), upOut);
  const upDone = trackEditing(upForm);
  upForm.addEventListener(
    'submit',
    busy(up, async () => {
      if (!upForm.reportValidity()) return;
      try {
        const r = await api('PUT', '/api/firmware/' + seg(name.value.trim()), file.files[0], { raw: true });
        fill(upOut, h('p', { class: 'success' }, `Stored ${r.name} (${(r.size / 1024).toLocaleString(undefined, { maximumFractionDigits: 1 })} KiB). Stations download it from ${r.url}.`));
        image.value = r.name;
        upDone();
      } catch (e) {
        fill(upOut, errorBox(e));
      }
    }),
  );

  // campaign
  const image = h('input', { name: 'firmware', autocomplete: 'off', placeholder: 'an uploaded image' });
  const url = h('input', { name: 'location', type: 'url', placeholder: 'or https://…/image.bin' });
  const stations = h('input', { name: 'stations', autocomplete: 'off', placeholder: 'CP1, CP2 (empty: every connected station)' });
  const goOut = h('div', { 'aria-live': 'polite' });
  const go = h('button', { type: 'submit' }, 'Start campaign');
  const goForm = h('form', { class: 'stack' }, h('div', { class: 'form-grid' }, field('Uploaded image', image), field('Or image URL', url)), field('Stations', stations), h('div', { class: 'actions' }, go), goOut);
  const goDone = trackEditing(goForm);
  goForm.addEventListener(
    'submit',
    busy(go, async () => {
      const body = {};
      if (image.value.trim()) body.firmware = image.value.trim();
      if (url.value.trim()) body.location = url.value.trim();
      const list = stations.value.split(/[\s,]+/).filter(Boolean);
      if (list.length) body.stations = list;
      try {
        const c = await post('/api/firmware-campaigns', body);
        const sent = (c.stations || []).filter((s) => s.requested).length;
        fill(goOut, h('p', { class: 'success' }, `Campaign ${c.id} started: ${sent} of ${(c.stations || []).length} stations accepted the update.`));
        toast('Campaign started.');
        goDone();
        campaigns.reset();
      } catch (e) {
        fill(goOut, errorBox(e));
      }
    }),
  );

  fill(view, h('div', { class: 'page-head' }, h('h1', {}, 'Firmware')), h('div', { class: 'grid' }, card('Upload an image', upForm), card('Start a campaign', goForm)), card('Campaigns', campaigns.el));
  await campaigns.reset();
  return {
    refresh: async (batch) => {
      if (batch.types.has('firmware_status') || batch.types.has('firmware_campaign')) await campaigns.refresh();
    },
  };
}
