// The console's shell: login, navigation by hash, live updates to the
// visible page.

import { takeKeyFromAddress, key, setKey, forgetKey, checkKey, whenUnauthorized, get } from './api.js';
import { Live } from './live.js';
import { fill, h } from './ui.js';

// first of all: a ?key= leaves the address bar (history, bookmarks)
takeKeyFromAddress();
localStorage.removeItem('csms-key');

const PAGES = {
  overview: () => import('./pages/overview.js'),
  stations: () => import('./pages/stations.js'),
  station: () => import('./pages/station.js'),
  sessions: () => import('./pages/sessions.js'),
  tokens: () => import('./pages/tokens.js'),
  tariffs: () => import('./pages/tariffs.js'),
  billing: () => import('./pages/billing.js'),
  drivers: () => import('./pages/drivers.js'),
  fleets: () => import('./pages/fleets.js'),
  invoices: () => import('./pages/invoices.js'),
  roaming: () => import('./pages/roaming.js'),
  firmware: () => import('./pages/firmware.js'),
  alerts: () => import('./pages/alerts.js'),
  maintenance: () => import('./pages/maintenance.js'),
  streams: () => import('./pages/streams.js'),
  site: () => import('./pages/site.js'),
};

const $ = (id) => document.getElementById(id);
const view = $('view');
let current = null; // {name, page: {refresh?, dispose?}}
let routeSeq = 0;

const live = new Live({
  onBatch: async (batch) => {
    const tasks = [alertBadge()];
    if (current?.page?.refresh) tasks.push(current.page.refresh(batch));
    await Promise.all(tasks);
  },
  isPaused: () => editing(),
  onState: (word) => {
    const el = $('live');
    el.textContent = word === 'live' ? 'live' : word === 'offline' ? 'offline' : 'connecting';
    el.className = 'live ' + word;
    el.title = word === 'live' ? 'Live updates from the CSMS' : 'Live updates paused: reconnecting to the CSMS';
  },
});

/** True while the operator edits something the refresh could redraw. */
function editing() {
  if (document.querySelector('dialog[open]')) return true;
  if (view.querySelector('form[data-editing="yes"]')) return true;
  // focus in a form pauses too, but not in a filter bar (data-live-keep)
  const a = document.activeElement;
  return !!(a && a.closest && a.closest('#view form:not([data-live-keep])') && a.matches('input,select,textarea'));
}

function showLogin(message) {
  live.stop();
  if (current?.page?.dispose) current.page.dispose();
  current = null;
  fill(view);
  $('app').hidden = true;
  $('login').hidden = false;
  const err = $('login-error');
  err.hidden = !message;
  err.textContent = message || '';
  const input = $('login-key');
  input.value = '';
  if (message) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
  input.focus();
}

function showApp() {
  $('login').hidden = true;
  $('app').hidden = false;
  live.start();
  alertBadge();
  route();
}

$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const button = $('login-submit');
  const k = $('login-key').value.trim();
  const err = $('login-error');
  if (!k) return;
  button.disabled = true;
  try {
    if (await checkKey(k)) {
      setKey(k);
      err.hidden = true;
      showApp();
    } else {
      showLogin('That key is not valid. Check it and try again.');
    }
  } catch (e) {
    err.hidden = false;
    err.textContent = e.message;
  } finally {
    button.disabled = false;
  }
});

$('logout').addEventListener('click', () => {
  forgetKey();
  location.hash = '';
  showLogin('');
});

whenUnauthorized(() => {
  forgetKey();
  showLogin('That key is not valid (the CSMS refused it). Sign in again.');
});

async function alertBadge() {
  try {
    const page = await get('/api/alerts', { status: 'open', limit: 1 });
    const b = $('alert-badge');
    b.hidden = page.total === 0;
    b.textContent = page.total.toLocaleString();
    b.title = `${page.total} open alerts`;
  } catch {
    /* the page shows errors; the badge stays as it was */
  }
}

/** `#/stations/CP%201` → ['stations', 'CP 1']. */
function parseHash() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  return parts.length ? parts : ['overview'];
}

async function route() {
  if (!key()) return;
  const my = ++routeSeq;
  let [name, ...args] = parseHash();
  if (name === 'stations' && args.length) name = 'station';
  const load = PAGES[name] || PAGES.overview;
  if (current?.page?.dispose) current.page.dispose();
  current = null;
  document.querySelectorAll('#nav a').forEach((a) => {
    const target = a.getAttribute('href').slice(2);
    if (target === name || (name === 'station' && target === 'stations')) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  });
  delete document.body.dataset.route;
  fill(view, h('p', { class: 'loading' }, 'Loading…'));
  const mod = await load();
  if (my !== routeSeq) return;
  fill(view);
  const page = (await mod.render(view, args)) || {};
  if (my !== routeSeq) {
    page.dispose?.();
    return;
  }
  current = { name, page };
  // the page shown, once it has loaded (tests wait for it)
  document.body.dataset.route = location.hash || '#/overview';
  view.focus({ preventScroll: true });
}

window.addEventListener('hashchange', route);

if (key()) showApp();
else showLogin('');
