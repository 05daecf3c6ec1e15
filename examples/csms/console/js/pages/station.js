// One station: what it is, its connectors, the live power of its active
// sessions, every CSMS-initiated OCPP action as a form generated from the
// action's schema in the station's version, its sessions, alerts,
// firmware, logs, device model and reports.

import { get, post, api, seg, hasRoute } from '../api.js';
import { h, fill, card, facts, pagedTable, pill, field, select, errorBox, toast, objectView, busy, trackEditing, describe, confirm } from '../ui.js';
import { time, ago, kwh, kw, connectorState, words } from '../format.js';
import { timeChart } from '../chart.js';
import { schemaForm } from '../schema-form.js';
import { onlinePill, stationDialog, deleteStation } from './stations.js';
import { sessionRow, sessionColumns, loadSessions } from './sessions.js';
import { alertColumns } from './alerts.js';

/** Power samples of a session, in W: the station's Power.Active.Import, else from the energy register's steps. */
export function powerSamples(meterValues) {
  const mv = meterValues || [];
  const scale = (m) => (String(m.unit || '').toLowerCase().startsWith('k') ? 1000 : 1);
  const power = mv.filter((m) => m.measurand === 'Power.Active.Import' && !m.phase).map((m) => [Date.parse(m.timestamp) / 1000, Number(m.value) * scale(m)]);
  if (power.length) return power.sort((a, b) => a[0] - b[0]);
  const energy = mv
    .filter((m) => (m.measurand || 'Energy.Active.Import.Register') === 'Energy.Active.Import.Register' && !m.phase)
    .map((m) => [Date.parse(m.timestamp) / 1000, Number(m.value) * scale(m)])
    .sort((a, b) => a[0] - b[0]);
  const out = [];
  for (let i = 1; i < energy.length; i++) {
    const dt = energy[i][0] - energy[i - 1][0];
    if (dt > 0) out.push([energy[i][0], ((energy[i][1] - energy[i - 1][1]) * 3600) / dt]);
  }
  return out;
}

/** The answer of an OCPP call in words, or why there is none. */
function callOutcome(action, e) {
  switch (e.status) {
    case 404:
      return `${action} was not sent: ${e.message}.`;
    case 422: {
      const at = e.body && e.body.pointer ? ` (at ${e.body.pointer || 'the top'})` : '';
      return `${action} was not sent: the request does not fit the schema${at}: ${e.message}`;
    }
    case 502: {
      const b = e.body || {};
      return b.code ? `The station refused ${action} with a CALLERROR: ${b.code}${b.description ? ' — ' + b.description : ''}.` : `The station could not be asked: ${e.message}.`;
    }
    case 504:
      return `The station did not answer ${action} in time.`;
    default:
      return describe(e);
  }
}

function actionsCard(station) {
  const box = h('div');
  const c = card('Send an OCPP command', box);
  c.id = 'ocpp-actions';
  const version = station.ocpp_version;
  if (!version) {
    fill(box, h('p', { class: 'muted' }, 'The station has not connected yet, so its OCPP version is not known: its commands are listed once it has.'));
    return c;
  }
  (async () => {
    let list;
    try {
      list = await get('/api/ocpp/actions', { version });
    } catch (e) {
      fill(box, errorBox(e));
      return;
    }
    const items = (list.items || []).slice().sort((a, b) => a.action.localeCompare(b.action));
    const byName = Object.fromEntries(items.map((i) => [i.action, i]));
    const chooser = select(
      items.map((i) => i.action),
      items.find((i) => i.action === 'Reset') ? 'Reset' : items[0]?.action,
      { name: 'action', id: 'ocpp-action' },
    );
    const formBox = h('div');
    const answer = h('div', { 'aria-live': 'polite', id: 'ocpp-answer' });
    const send = h('button', { type: 'submit', id: 'ocpp-send' }, 'Send');
    const form = h('form', { class: 'stack', id: 'ocpp-form' }, formBox, h('div', { class: 'actions' }, send, station.connected ? null : h('span', { class: 'muted' }, 'The station is offline: the CSMS will say so.')));
    let sf;
    let done = trackEditing(form);
    const choose = () => {
      const it = byName[chooser.value];
      sf = schemaForm(it ? it.schema : {});
      fill(formBox, sf.el);
      fill(answer);
      done();
    };
    chooser.addEventListener('change', choose);
    form.addEventListener(
      'submit',
      busy(send, async () => {
        if (!sf.isRaw() && !form.reportValidity()) return;
        const action = chooser.value;
        let payload;
        try {
          payload = sf.value();
        } catch (e) {
          fill(answer, h('div', { class: 'answer failed', role: 'alert' }, 'The raw JSON is not valid: ' + e.message));
          return;
        }
        fill(answer, h('p', { class: 'muted' }, `Sending ${action}…`));
        try {
          const res = await api('POST', `/api/stations/${seg(station.id)}/ocpp/${seg(action)}`, payload);
          const status = res && typeof res === 'object' && res.status;
          fill(
            answer,
            h(
              'div',
              { class: 'answer', dataset: { outcome: 'answered', status: status || '' } },
              h('strong', {}, `${station.id} answered ${action}`, status ? [': ', pill(status, String(status).toLowerCase().startsWith('accept') ? 'accepted' : 'rejected')] : ''),
              h('small', { class: 'muted' }, ' at ' + new Date().toLocaleTimeString()),
              objectView(res),
            ),
          );
          done();
          toast(`${action}: ${status || 'answered'}`);
        } catch (e) {
          fill(answer, h('div', { class: 'answer failed', role: 'alert', dataset: { outcome: 'failed', status: String(e.status || '') } }, h('strong', {}, callOutcome(action, e)), e.body?.details ? objectView(e.body.details) : null));
        }
      }),
    );
    fill(box, h('p', { class: 'muted' }, `Commands a CSMS may send in OCPP ${version}; the form follows each command's schema. Required fields are marked *.`), field('Command', chooser), form, answer);
    choose();
  })();
  return c;
}

function connectorsTable(s) {
  const list = (s.connectors || []).slice().sort((a, b) => (a.evse_id ?? 0) - (b.evse_id ?? 0) || (a.connector_id ?? 0) - (b.connector_id ?? 0));
  if (!list.length) return h('p', { class: 'muted' }, 'The station has reported no connector yet.');
  return h(
    'table',
    { class: 'list' },
    h('thead', {}, h('tr', {}, h('th', {}, 'EVSE'), h('th', {}, 'Connector'), h('th', {}, 'State'), h('th', {}, 'As reported'), h('th', {}, 'Error'), h('th', {}, 'Since'))),
    h(
      'tbody',
      {},
      list.map((c) => {
        const st = connectorState(c.status, s.connected);
        return h('tr', { dataset: { connector: `${c.evse_id ?? ''}/${c.connector_id ?? ''}`, state: st.word } }, h('td', {}, c.evse_id ?? '—'), h('td', {}, c.connector_id ?? '—'), h('td', {}, pill(st.word, st.cls, st.raw)), h('td', { class: 'muted' }, c.status || '—'), h('td', {}, c.error_code && c.error_code !== 'NoError' ? pill(c.error_code, 'bad') : '—'), h('td', {}, time(c.updated_at || c.at || c.timestamp)));
      }),
    ),
  );
}

export async function render(view, [id]) {
  let station;
  try {
    station = await get('/api/stations/' + seg(id));
  } catch (e) {
    fill(view, h('div', { class: 'page-head' }, h('h1', {}, id)), errorBox(e), h('p', {}, h('a', { href: '#/stations' }, '← All stations')));
    return {};
  }
  const head = h('div', { class: 'page-head' });
  const info = h('div');
  const conns = h('div');
  const powerNow = h('p', { class: 'big-number' });
  const powerBox = h('div', { class: 'chart', id: 'chart-power' });
  const firmwareBox = h('div');
  const logsBox = h('div');
  const dmBox = h('div');
  const reportsBox = h('div');
  const sessions = pagedTable({ limit: 20, empty: 'No session at this station yet.', load: (p) => loadSessions({ ...p, station: id }), rowAttrs: sessionRow, columns: sessionColumns({ station: false, onChange: () => sessions.refresh() }) });
  const alerts = pagedTable({ limit: 20, empty: 'No alert for this station.', load: (p) => get('/api/alerts', { ...p, station: id }), rowAttrs: (a) => ({ dataset: { alert: a.id } }), columns: alertColumns(() => alerts.refresh(), false) });

  const canRotate = await hasRoute('/api/stations/{id}/password', 'post');
  const rotated = h('div', { 'aria-live': 'polite' });
  async function rotate() {
    if (!(await confirm(`Give ${id} a new password?`, 'The CSMS sends the station a new random password and adopts it once the station accepts; the station then reconnects with it and the old one is refused.', 'Rotate password'))) return;
    try {
      const r = await post(`/api/stations/${seg(id)}/password`, undefined);
      fill(rotated, h('div', { class: 'answer' }, h('strong', {}, `${id} accepted its new password.`), r.password ? facts([['New password (shown once)', h('code', {}, r.password)]]) : null));
      toast('Password rotated.');
    } catch (e) {
      fill(rotated, h('div', { class: 'answer failed', role: 'alert' }, 'The password was not changed: ' + describe(e)));
    }
  }
  function drawHead() {
    fill(
      head,
      h('h1', {}, station.id, ' ', onlinePill(station)),
      canRotate && station.connected && station.has_password ? h('button', { type: 'button', class: 'secondary', onclick: rotate }, 'Rotate password') : null,
      h('button', { type: 'button', class: 'secondary', onclick: () => stationDialog(station, () => reload()) }, 'Edit'),
      h('button', { type: 'button', class: 'danger', onclick: async () => (await deleteStation(station.id)) && (location.hash = '#/stations') }, 'Delete'),
    );
    fill(
      info,
      facts([
        ['OCPP version', station.ocpp_version || 'not connected yet'],
        ['Vendor / model', [station.vendor, station.model].filter(Boolean).join(' ') || '—'],
        ['Serial number', station.serial || '—'],
        ['Firmware', station.firmware || '—'],
        ['Registration', station.registration || '—'],
        ['Security profile', station.security_profile ?? 'the CSMS default'],
        ['Password', station.has_password ? 'set' : 'none'],
        ['Last boot', station.last_boot ? `${time(station.last_boot)} (${station.boot_status || '—'})` : 'never'],
        ['Last seen', station.connected ? 'connected now' : station.last_seen ? `${time(station.last_seen)} (${ago(station.last_seen)})` : 'never'],
      ]),
    );
    fill(conns, connectorsTable(station));
  }

  let actions = actionsCard(station);
  async function reload() {
    try {
      const before = station.ocpp_version;
      station = await get('/api/stations/' + seg(id));
      drawHead();
      if (station.ocpp_version !== before) {
        const next = actionsCard(station);
        actions.replaceWith(next);
        actions = next;
      }
    } catch (e) {
      fill(info, errorBox(e));
    }
  }

  async function power() {
    try {
      const active = await get('/api/sessions', { station: id, status: 'Active', limit: 10 });
      if (!active.items.length) {
        fill(powerNow, 'No active session: 0 kW.');
        timeChart(powerBox, { title: 'Power', xs: [], series: [] });
        return;
      }
      const details = await Promise.all(active.items.map((s) => get('/api/sessions/' + seg(s.id))));
      const per = details.map((d) => ({ d, pts: powerSamples(d.meter_values) }));
      const xs = [...new Set(per.flatMap((p) => p.pts.map((x) => x[0])))].sort((a, b) => a - b);
      const series = per.map(({ d, pts }) => {
        const m = new Map(pts);
        return { label: `Connector ${d.evse_id ?? ''}/${d.connector_id ?? ''} (${d.id_token || 'no token'})`, unit: 'kW', values: xs.map((x) => (m.has(x) ? m.get(x) / 1000 : null)) };
      });
      const now = per.reduce((a, p) => a + (p.pts.length ? p.pts[p.pts.length - 1][1] : 0), 0);
      fill(powerNow, `Now: ${kw(now)} in ${active.total} active session${active.total === 1 ? '' : 's'}, ${kwh(details.reduce((a, d) => a + Number(d.energy_wh || 0), 0))} so far.`);
      timeChart(powerBox, { title: 'Power of active sessions', xs, series, xLabel: 'Time (local)' });
    } catch (e) {
      fill(powerNow, errorBox(e));
    }
  }

  async function firmware(batch) {
    const latest = batch ? batch.latest.filter((e) => e.type === 'firmware_status' && e.station === id).pop() : null;
    let row = null;
    try {
      const page = await get('/api/firmware-campaigns', { limit: 20 });
      for (const c of page.items) {
        const s = (c.stations || []).find((x) => x.station === id);
        if (s) {
          row = { c, s };
          break;
        }
      }
    } catch (e) {
      fill(firmwareBox, errorBox(e));
      return;
    }
    fill(
      firmwareBox,
      facts([
        ['Installed version', station.firmware || '—'],
        ['Latest status', latest ? latest.status : row?.s.status ? row.s.status : row ? (row.s.requested ? 'update requested' : 'not requested: ' + (row.s.reason || 'refused')) : 'no update sent'],
        row ? ['Campaign', `${row.c.id}, started ${time(row.c.started_at)}`] : null,
        row ? ['Image', row.c.location] : null,
      ]),
    );
  }

  async function logs() {
    try {
      const l = await get(`/api/stations/${seg(id)}/logs`);
      const req = h('button', { type: 'button', class: 'secondary' }, 'Ask the station for its log');
      const out = h('div', { 'aria-live': 'polite' });
      req.addEventListener(
        'click',
        busy(req, async () => {
          try {
            const r = await post(`/api/stations/${seg(id)}/logs`, undefined);
            fill(out, h('div', { class: 'answer' }, h('strong', {}, 'The station answered'), objectView(r)));
          } catch (e) {
            fill(out, h('div', { class: 'answer failed', role: 'alert' }, describe(e)));
          }
        }),
      );
      fill(
        logsBox,
        facts([['Last upload status', l.status ? `${l.status.status} (${time(l.status.at)})` : 'none yet']]),
        l.files?.length ? h('ul', {}, l.files.map((f) => h('li', {}, `${f.file} — ${(f.size / 1024).toLocaleString(undefined, { maximumFractionDigits: 1 })} KiB`))) : h('p', { class: 'muted' }, 'No log uploaded yet.'),
        h('div', { class: 'actions' }, req),
        out,
      );
    } catch (e) {
      fill(logsBox, errorBox(e));
    }
  }

  async function deviceModel() {
    try {
      const dm = await get(`/api/stations/${seg(id)}/device-model`);
      const vars = dm.variables || [];
      if (!vars.length) {
        fill(dmBox, h('p', { class: 'muted' }, station.ocpp_version === '1.6' ? 'OCPP 1.6 stations have no device model (use GetConfiguration above).' : 'Not reported yet: send GetBaseReport above.'));
        return;
      }
      const filter = h('input', { type: 'search', placeholder: 'component or variable…' });
      const tbody = h('tbody');
      const count = h('p', { class: 'muted' });
      const draw = () => {
        const f = filter.value.trim().toLowerCase();
        const rows = vars.filter((v) => !f || JSON.stringify([v.component, v.variable]).toLowerCase().includes(f));
        fill(
          tbody,
          rows.slice(0, 200).map((v) => {
            const attrs = v.variableAttribute || [];
            const actual = attrs.find((a) => (a.type || 'Actual') === 'Actual') || attrs[0] || {};
            const comp = v.component || {};
            const vr = v.variable || {};
            return h('tr', {}, h('td', {}, comp.name + (comp.instance ? ` (${comp.instance})` : '') + (comp.evse ? ` EVSE ${comp.evse.id}` : '')), h('td', {}, vr.name + (vr.instance ? ` (${vr.instance})` : '')), h('td', {}, actual.value ?? '—'), h('td', { class: 'muted' }, actual.mutability || '—'));
          }),
        );
        count.textContent = `${rows.length.toLocaleString()} of ${vars.length.toLocaleString()} variables${rows.length > 200 ? ' (first 200 shown: narrow the filter)' : ''}`;
      };
      filter.addEventListener('input', draw);
      fill(dmBox, h('form', { class: 'toolbar', 'data-live-keep': true, onsubmit: (e) => e.preventDefault() }, field('Filter', filter)), count, h('div', { class: 'table-wrap' }, h('table', { class: 'list' }, h('thead', {}, h('tr', {}, h('th', {}, 'Component'), h('th', {}, 'Variable'), h('th', {}, 'Value'), h('th', {}, 'Mutability'))), tbody)));
      draw();
    } catch (e) {
      fill(dmBox, errorBox(e));
    }
  }

  async function reports() {
    try {
      const list = (await get(`/api/stations/${seg(id)}/reports`, { limit: 20 })).items;
      fill(
        reportsBox,
        list.length ? list.map((r) => h('details', {}, h('summary', {}, `${words(r.kind)} — ${time(r.received_at)}`), objectView(r.body))) : h('p', { class: 'muted' }, 'No report yet (charging limits and needs, monitoring, display messages, …).'),
      );
    } catch (e) {
      fill(reportsBox, errorBox(e));
    }
  }

  fill(
    view,
    head,
    rotated,
    h('div', { class: 'grid' }, card('Station', info), card('Connectors', conns)),
    card('Live power', powerNow, powerBox),
    actions,
    card('Sessions', sessions.el),
    card('Alerts', alerts.el),
    h('div', { class: 'grid' }, card('Firmware', firmwareBox), card('Logs', logsBox)),
    card('Device model', dmBox),
    card('Reports', reportsBox),
  );
  drawHead();
  await Promise.all([power(), sessions.reset(), alerts.reset(), firmware(), logs(), deviceModel(), reports()]);
  return {
    refresh: async (batch) => {
      if (!batch.stations.has(id) && !batch.types.has('alert_cleared')) return;
      const t = [reload(), power(), sessions.refresh(), alerts.refresh()];
      if (batch.types.has('firmware_status') || batch.types.has('firmware_campaign') || batch.types.has('boot')) t.push(firmware(batch));
      if (batch.types.has('log_status')) t.push(logs());
      if (batch.types.has('device_model')) t.push(deviceModel());
      if (batch.types.has('report')) t.push(reports());
      await Promise.all(t);
    },
  };
}
