// The operator API: the key, requests with it, errors in words.
//
// The key lives in this tab's session storage only (never localStorage:
// it would outlive the tab). A key passed once as /?key=... is moved there
// and taken out of the address bar at once, so it stays out of the
// browser history and of bookmarks.

const STORE = 'csms-key';

/** Moves a `?key=` from the address into session storage (called first). */
export function takeKeyFromAddress() {
  const params = new URLSearchParams(location.search);
  if (params.has('key')) {
    sessionStorage.setItem('csms-key', params.get('key'));
    params.delete('key');
    const rest = params.toString();
    history.replaceState(null, '', location.pathname + (rest ? '?' + rest : '') + location.hash);
  }
}

export function key() {
  return sessionStorage.getItem(STORE) || '';
}

export function setKey(k) {
  sessionStorage.setItem(STORE, k);
}

export function forgetKey() {
  sessionStorage.removeItem(STORE);
}

/** An API refusal: HTTP status, the server's reason and its whole body. */
export class ApiError extends Error {
  constructor(status, reason, body) {
    super(reason);
    this.status = status;
    this.body = body;
  }
}

/** Listeners told when the key is refused (the console goes back to login). */
const onUnauthorized = [];
export function whenUnauthorized(f) {
  onUnauthorized.push(f);
}

/**
 * One request: `method path` with the key, a JSON body when given.
 * Answers the parsed JSON (null for 204); throws ApiError otherwise.
 */
export async function api(method, path, body, { raw = false, signal } = {}) {
  const headers = { Authorization: 'Bearer ' + key() };
  const init = { method, headers, signal, cache: 'no-store' };
  if (body !== undefined) {
    if (raw) {
      init.body = body;
      headers['Content-Type'] = 'application/octet-stream';
    } else {
      init.body = JSON.stringify(body);
      headers['Content-Type'] = 'application/json';
    }
  }
  let r;
  try {
    r = await fetch(path, init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'the CSMS cannot be reached (' + e.message + ')', null);
  }
  const text = await r.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (r.status === 401) {
    onUnauthorized.forEach((f) => f());
    throw new ApiError(401, 'that key is not valid', data);
  }
  if (!r.ok) {
    const reason = (data && typeof data === 'object' && data.error) || (typeof data === 'string' && data) || r.statusText;
    throw new ApiError(r.status, String(reason), data);
  }
  return data;
}

/** A path with a query string of the params that are set. */
export function withQuery(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const s = q.toString();
  return s ? path + '?' + s : path;
}

export const get = (path, params, opts) => api('GET', withQuery(path, params), undefined, opts);
export const put = (path, body) => api('PUT', path, body);
export const post = (path, body) => api('POST', path, body);
export const del = (path) => api('DELETE', path);

/** `encodeURIComponent` for a path segment. */
export const seg = (s) => encodeURIComponent(s);

/** Checks a key without the side effects of a refusal: true when valid. */
export async function checkKey(k) {
  const r = await fetch('/api/overview', { headers: { Authorization: 'Bearer ' + k }, cache: 'no-store' }).catch(() => null);
  if (!r) throw new ApiError(0, 'the CSMS cannot be reached', null);
  if (r.status === 401) return false;
  if (r.status === 404) {
    // an older CSMS without /api/overview: any keyed list tells
    const r2 = await fetch('/api/tokens?limit=1', { headers: { Authorization: 'Bearer ' + k }, cache: 'no-store' });
    return r2.status !== 401;
  }
  return true;
}

let docPromise = null;
/** The CSMS's OpenAPI document (once per page load). */
export function openapi() {
  if (!docPromise) docPromise = fetch('/api/openapi.json', { cache: 'no-store' }).then((r) => (r.ok ? r.json() : {})).catch(() => ({}));
  return docPromise;
}

/** The properties a request body of `method path` has in the OpenAPI document. */
export async function bodyProperties(path, method) {
  const doc = await openapi();
  let schema = doc?.paths?.[path]?.[method]?.requestBody?.content?.['application/json']?.schema || {};
  if (schema.$ref) schema = schema.$ref.split('/').slice(1).reduce((o, p) => o?.[p], doc) || {};
  return new Set(Object.keys(schema.properties || {}));
}

/** The query parameters `GET path` has in the OpenAPI document (by name, $refs followed). */
export async function queryParams(path) {
  const doc = await openapi();
  const params = doc?.paths?.[path]?.get?.parameters || [];
  return new Set(params.map((p) => (p.$ref ? p.$ref.split('/').slice(1).reduce((o, k) => o?.[k], doc) : p)).filter((p) => p && p.in === 'query').map((p) => p.name));
}

/** Whether the OpenAPI document has `method path`. */
export async function hasRoute(path, method) {
  const doc = await openapi();
  return !!doc?.paths?.[path]?.[method];
}

/**
 * Downloads `path` (sent with the key, so not a plain link) as `filename`:
 * the answer becomes a blob the browser saves.
 */
export async function download(path, filename) {
  let r;
  try {
    r = await fetch(path, { headers: { Authorization: 'Bearer ' + key() }, cache: 'no-store' });
  } catch (e) {
    throw new ApiError(0, 'the CSMS cannot be reached (' + e.message + ')', null);
  }
  if (!r.ok) {
    const data = await r.json().catch(() => null);
    if (r.status === 401) onUnauthorized.forEach((f) => f());
    throw new ApiError(r.status, String(data?.error || r.statusText), data);
  }
  const url = URL.createObjectURL(await r.blob());
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
