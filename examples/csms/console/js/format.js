// Values as a person reads them: local times, durations, kWh, kW, money,
// connector states in words.

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });

/** A time in the browser's zone ("6 Dec 2026, 06:12:03"); '—' when unknown. */
export function time(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : dateTime.format(d);
}

/** A day ("6 Dec 2026") from YYYY-MM-DD, read as that calendar day. */
export function day(ymd) {
  const [y, m, d] = String(ymd).split('-').map(Number);
  if (!y || !m || !d) return String(ymd);
  return dateOnly.format(new Date(y, m - 1, d));
}

/** How long ago, in words ("3 min ago"). */
export function ago(iso) {
  if (!iso) return 'never';
  const s = Math.round((Date.now() - new Date(iso)) / 1000);
  if (isNaN(s)) return '—';
  if (s < 5) return 'just now';
  return duration(s) + ' ago';
}

/** Seconds as "1 h 05 min", "4 min 12 s", "42 s". */
export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return s + ' s';
  const m = Math.floor(s / 60);
  if (m < 60) return m + ' min ' + String(s % 60).padStart(2, '0') + ' s';
  const h = Math.floor(m / 60);
  if (h < 48) return h + ' h ' + String(m % 60).padStart(2, '0') + ' min';
  return Math.floor(h / 24) + ' d ' + (h % 24) + ' h';
}

/** A session's duration: from start to its end, or to now while it runs. */
export function sessionDuration(s) {
  if (!s.started_at) return '—';
  const end = s.stopped_at ? new Date(s.stopped_at) : new Date();
  return duration((end - new Date(s.started_at)) / 1000);
}

const num = (digits) => new Intl.NumberFormat(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits });
const n3 = num(3);
const n2 = num(2);
const n1 = num(1);

/** Wh (number or decimal string) as kWh. */
export function kwh(wh) {
  if (wh === null || wh === undefined || wh === '') return '—';
  return n3.format(Number(wh) / 1000) + ' kWh';
}

/** kWh as given (decimal string). */
export function kwhValue(k) {
  if (k === null || k === undefined || k === '') return '—';
  return n3.format(Number(k)) + ' kWh';
}

/** W as kW. */
export function kw(w) {
  if (w === null || w === undefined || isNaN(Number(w))) return '—';
  return n1.format(Number(w) / 1000) + ' kW';
}

/** A decimal amount in its currency ("€12.30"). */
export function money(amount, currency) {
  if (amount === null || amount === undefined || amount === '') return '—';
  try {
    return new Intl.NumberFormat(undefined, { style: 'currency', currency: currency || 'EUR' }).format(Number(amount));
  } catch {
    return n2.format(Number(amount)) + ' ' + (currency || '');
  }
}

/** A percentage from a 0–1 ratio. */
export function percent(ratio) {
  return n1.format(100 * Number(ratio)) + ' %';
}

// Connector states of both versions in the same words; the raw value is
// shown on hover.
const CONNECTOR = {
  Available: 'Available',
  Preparing: 'In use',
  Charging: 'In use',
  SuspendedEV: 'In use',
  SuspendedEVSE: 'In use',
  Finishing: 'In use',
  Occupied: 'In use',
  Reserved: 'Reserved',
  Unavailable: 'Unavailable',
  Faulted: 'Faulted',
};

/** {word, cls, raw}: a connector's state in words, Offline when its station is not connected. */
export function connectorState(raw, connected) {
  if (!connected) return { word: 'Offline', cls: 'offline', raw: raw ? raw + ' (last reported; station offline)' : 'station offline' };
  const word = CONNECTOR[raw] || (raw ? raw : 'Unknown');
  return { word, cls: word.toLowerCase().replace(/\s+/g, '-'), raw: raw || 'no status reported yet' };
}

/** Words for a snake_case or CamelCase identifier ("ev_charging_needs" → "EV charging needs"). */
export function words(id) {
  if (!id) return '';
  const s = String(id)
    .replace(/_/g, ' ')
    .replace(/([a-z])([A-Z])/g, '$1 $2')
    .toLowerCase()
    .replace(/\bev\b/g, 'EV')
    .replace(/\bocpp\b/g, 'OCPP')
    .replace(/\bocpi\b/g, 'OCPI')
    .replace(/\bder\b/g, 'DER');
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** An ISO time for a datetime-local input's value (local wall time). */
export function toLocalInput(iso) {
  const d = iso ? new Date(iso) : new Date();
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A datetime-local input's value as RFC 3339 (UTC); '' stays ''. */
export function fromLocalInput(v) {
  if (!v) return '';
  const d = new Date(v);
  return isNaN(d) ? '' : d.toISOString();
}

/** Decimals of a currency's minor unit (EUR: 2, JPY: 0). */
export function minorDigits(currency) {
  try {
    return new Intl.NumberFormat(undefined, { style: 'currency', currency: currency || 'EUR' }).resolvedOptions().maximumFractionDigits;
  } catch {
    return 2;
  }
}

/** An amount in minor units (cents) in its currency ("€12.30"). */
export function minor(amount, currency, digits) {
  if (amount === null || amount === undefined || amount === '') return '—';
  return money(Number(amount) / 10 ** (digits ?? minorDigits(currency)), currency);
}
