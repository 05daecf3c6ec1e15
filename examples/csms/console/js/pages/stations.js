// Stations: search, paging through any number of them, connector states
// in the same words for every OCPP version, register, edit, delete.

import { get, put, del, seg, bodyProperties } from '../api.js';
import { h, fill, card, pagedTable, pill, field, select, modal, confirm, toast, errorBox, trackEditing, busy } from '../ui.js';
import { connectorState, ago } from '../format.js';

/** A station's connectors as pills in words, the raw state on hover. */
export function connectorPills(s) {
  const list = (s.connectors || []).slice().sort((a, b) => (a.evse_id ?? 0) - (b.evse_id ?? 0) || (a.connector_id ?? 0) - (b.connector_id ?? 0));
  if (!list.length) return h('span', { class: 'muted' }, s.connected ? 'none reported' : 'Offline');
  return list.map((c) => {
    const st = connectorState(c.status, s.connected);
    const where = c.evse_id !== undefined && c.evse_id !== null ? `${c.evse_id}/${c.connector_id ?? 1}` : String(c.connector_id ?? '');
    return pill(`${where} ${st.word}`, st.cls, `EVSE ${c.evse_id ?? '—'}, connector ${c.connector_id ?? '—'}: ${st.raw}`);
  });
}

export function onlinePill(s) {
  return s.connected ? pill('Online', 'online', 'connected now') : pill('Offline', 'offline', s.last_seen ? 'last seen ' + ago(s.last_seen) : 'never connected');
}

const PROFILES = [
  ['0', '0 — no authentication (lab only)'],
  ['1', '1 — password (Basic auth), no TLS'],
  ['2', '2 — password over TLS'],
  ['3', '3 — TLS client certificate'],
];

/** A random station password (24 characters). */
function randomPassword() {
  const abc = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789';
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  return Array.from(bytes, (b) => abc[b % abc.length]).join('');
}

/**
 * The register/edit form in a modal. `station` is the stored station
 * (edit) or null (register). Resolves after a save with the saved id.
 */
export async function stationDialog(station, onSaved) {
  const known = await bodyProperties('/api/stations/{id}', 'put');
  const editing = !!station;
  modal(editing ? `Edit station ${station.id}` : 'Register a station', (close) => {
    const id = h('input', { name: 'identity', required: true, maxlength: 48, pattern: '[!-~]+', autocomplete: 'off', value: station?.id, disabled: editing, spellcheck: 'false' });
    const pw = h('input', { name: 'password', type: 'password', minlength: 16, maxlength: 40, autocomplete: 'new-password', spellcheck: 'false' });
    const show = h('button', { type: 'button', class: 'secondary small' }, 'Show');
    show.addEventListener('click', () => {
      pw.type = pw.type === 'password' ? 'text' : 'password';
      show.textContent = pw.type === 'password' ? 'Show' : 'Hide';
    });
    const gen = h('button', { type: 'button', class: 'secondary small' }, 'Generate');
    gen.addEventListener('click', () => {
      pw.value = randomPassword();
      pw.type = 'text';
      show.textContent = 'Hide';
    });
    const hasProfile = known.has('security_profile');
    const hasRegistration = known.has('registration');
    const profile = select(PROFILES, station?.security_profile ?? '', { name: 'security_profile', disabled: !hasProfile });
    if (!station || station.security_profile === undefined || station.security_profile === null) profile.prepend(h('option', { value: '', selected: true }, '— the CSMS default —'));
    const registration = select(['Accepted', 'Pending', 'Rejected'], station?.registration ?? 'Accepted', { name: 'registration', disabled: !hasRegistration });
    const loc = station?.location || {};
    const L = (name, label, attrs) => field(label, h('input', { name: 'loc-' + name, value: loc[name], ...attrs }));
    const coords = loc.coordinates || {};
    const err = h('div');
    const save = h('button', { type: 'submit' }, editing ? 'Save' : 'Register');
    const form = h(
      'form',
      { class: 'stack', novalidate: false },
      h('div', { class: 'form-grid' }, field('Identity', id, 'as the station connects: …/ocpp/{identity}'), field('Registration', registration, hasRegistration ? 'Pending: the station may connect but gets Pending at boot' : 'this CSMS does not store it yet')),
      h(
        'div',
        { class: 'form-grid' },
        field('Password', pw, editing ? (station.has_password ? 'a password is set; leave empty to keep it' : 'no password yet; 16 to 40 characters') : '16 to 40 characters; needed under security profiles 1 and 2'),
        h('div', { class: 'actions' }, gen, show),
        field('Security profile', profile, hasProfile ? null : 'this CSMS does not store it yet'),
      ),
      h(
        'fieldset',
        {},
        h('legend', {}, 'Location (for roaming)'),
        h(
          'div',
          { class: 'form-grid' },
          L('name', 'Name'),
          L('address', 'Address'),
          L('city', 'City'),
          L('postal_code', 'Postal code'),
          L('country', 'Country (ISO 3166 alpha-3)', { maxlength: 3, pattern: '[A-Z]{3}', placeholder: 'NLD' }),
          L('time_zone', 'Time zone', { placeholder: 'Europe/Amsterdam' }),
          field('Latitude', h('input', { name: 'loc-latitude', value: coords.latitude, inputmode: 'decimal', pattern: '-?[0-9]{1,2}(\\.[0-9]+)?' })),
          field('Longitude', h('input', { name: 'loc-longitude', value: coords.longitude, inputmode: 'decimal', pattern: '-?[0-9]{1,3}(\\.[0-9]+)?' })),
        ),
      ),
      err,
      h('div', { class: 'actions' }, save, h('button', { type: 'button', class: 'secondary', onclick: close }, 'Cancel')),
    );
    trackEditing(form);
    form.addEventListener(
      'submit',
      busy(save, async () => {
        if (!form.reportValidity()) return;
        const body = {};
        if (pw.value) body.password = pw.value;
        if (hasProfile && profile.value !== '') body.security_profile = Number(profile.value);
        if (hasRegistration) body.registration = registration.value;
        const location = {};
        for (const k of ['name', 'address', 'city', 'postal_code', 'country', 'time_zone']) {
          const v = form.elements['loc-' + k].value.trim();
          if (v) location[k] = v;
        }
        const lat = form.elements['loc-latitude'].value.trim();
        const lon = form.elements['loc-longitude'].value.trim();
        if (lat || lon) {
          if (!lat || !lon) {
            fill(err, h('p', { class: 'error', role: 'alert' }, 'Give both latitude and longitude, or neither.'));
            return;
          }
          location.coordinates = { latitude: lat, longitude: lon };
        }
        if (Object.keys(location).length) body.location = location;
        const ident = editing ? station.id : id.value.trim();
        try {
          await put('/api/stations/' + seg(ident), body);
        } catch (e) {
          fill(err, errorBox(e));
          return;
        }
        toast(editing ? `Station ${ident} saved.` : `Station ${ident} registered.`);
        form.dataset.editing = '';
        close();
        onSaved?.(ident);
      }),
    );
    queueMicrotask(() => (editing ? pw : id).focus());
    return form;
  });
}

/** Deletes a station after asking. Resolves true when deleted. */
export async function deleteStation(id) {
  if (!(await confirm(`Delete station ${id}?`, `${id} will no longer be able to connect, and its registration, password and settings are removed. Its sessions and CDRs stay.`, 'Delete station'))) return false;
  try {
    await del('/api/stations/' + seg(id));
    toast(`Station ${id} deleted.`);
    return true;
  } catch (e) {
    toast(`Could not delete ${id}: ${e.message}`, 'error');
    return false;
  }
}

export async function render(view) {
  const q = h('input', { type: 'search', name: 'q', placeholder: 'identity contains…', autocomplete: 'off' });
  const status = select([['', 'any'], ['Accepted', 'Accepted'], ['Pending', 'Pending'], ['Rejected', 'Rejected']], '', { name: 'status' });
  const add = h('button', { type: 'button' }, '+ Register station');
  const table = pagedTable({
    caption: null,
    limit: 50,
    empty: 'No station matches.',
    load: (p) => get('/api/stations', { ...p, q: q.value.trim(), status: status.value }),
    rowAttrs: (s) => ({ dataset: { station: s.id } }),
    columns: [
      { label: 'Identity', cell: (s) => h('a', { href: '#/stations/' + encodeURIComponent(s.id) }, s.id) },
      { label: 'Link', cell: onlinePill },
      { label: 'Connectors', cell: connectorPills },
      { label: 'OCPP', cell: (s) => s.ocpp_version || '—' },
      { label: 'Vendor / model', cell: (s) => [s.vendor, s.model].filter(Boolean).join(' ') || '—' },
      { label: 'Registration', cell: (s) => (s.registration ? pill(s.registration, s.registration.toLowerCase()) : s.boot_status ? pill('boot ' + s.boot_status, s.boot_status.toLowerCase()) : '—') },
      { label: 'Last seen', cell: (s) => (s.connected ? 'now' : ago(s.last_seen)) },
      {
        label: 'Actions',
        cell: (s) =>
          h(
            'div',
            { class: 'actions' },
            h('button', { type: 'button', class: 'secondary small', 'aria-label': 'Edit ' + s.id, onclick: async () => stationDialog(await get('/api/stations/' + seg(s.id)), () => table.refresh()) }, 'Edit'),
            h('button', { type: 'button', class: 'secondary small', 'aria-label': 'Delete ' + s.id, onclick: async () => (await deleteStation(s.id)) && table.refresh() }, 'Delete'),
          ),
      },
    ],
  });
  add.addEventListener('click', () => stationDialog(null, (id) => (location.hash = '#/stations/' + encodeURIComponent(id))));
  let debounce;
  q.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => table.reset(), 250);
  });
  status.addEventListener('change', () => table.reset());
  fill(
    view,
    h('div', { class: 'page-head' }, h('h1', {}, 'Stations'), add),
    card(null, h('form', { class: 'toolbar', role: 'search', 'data-live-keep': true, onsubmit: (e) => (e.preventDefault(), table.reset()) }, field('Search', q), field('Boot status', status)), table.el),
  );
  await table.reset();
  return { refresh: () => table.refresh(), dispose: () => clearTimeout(debounce) };
}
