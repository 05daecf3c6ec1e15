// Small DOM helpers: elements, tables that page through the API with its
// cursor, forms, dialogs, notices. Text goes in as text (never as HTML).

/** An element: h('a', {href: '#/x', class: 'y'}, 'text', child, ...). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let uid = 0;
/** A fresh id for label/input pairs. */
export const nextId = (p = 'f') => `${p}-${++uid}`;

/** A labelled field: label above its input (the input gets an id). */
export function field(label, input, hint) {
  if (!input.id) input.id = nextId();
  const req = input.required ? h('span', { class: 'req', title: 'required' }, ' *') : null;
  return h('div', { class: 'field' }, h('label', { for: input.id }, label, req), input, hint ? h('small', { class: 'hint' }, hint) : null);
}

/** A select of options ([value, label] or value). */
export function select(options, value, attrs) {
  return h(
    'select',
    attrs,
    options.map((o) => {
      const [v, l] = Array.isArray(o) ? o : [o, o];
      return h('option', { value: v, selected: String(v) === String(value ?? '') }, l);
    }),
  );
}

/** A pill: a short state in colour with a word. */
export function pill(word, cls, title) {
  return h('span', { class: 'pill ' + (cls || ''), title }, word);
}

/** A notice at the top of the page that goes away by itself. */
export function toast(message, kind = 'ok') {
  const box = document.getElementById('toasts');
  const t = h('div', { class: 'toast ' + kind, role: kind === 'error' ? 'alert' : 'status' }, message);
  box.append(t);
  setTimeout(() => t.remove(), kind === 'error' ? 8000 : 4000);
}

/** An error box for a form or a section. */
export function errorBox(e) {
  return h('p', { class: 'error', role: 'alert' }, describe(e));
}

/** An API error in words. */
export function describe(e) {
  if (!e) return '';
  const status = e.status ? ` (HTTP ${e.status})` : '';
  return (e.message || String(e)) + status;
}

/** Asks before doing something that cannot be undone: resolves true or false. */
export function confirm(title, text, action = 'Delete') {
  return new Promise((resolve) => {
    const d = h(
      'dialog',
      { class: 'confirm', 'aria-labelledby': 'confirm-title' },
      h('h2', { id: 'confirm-title' }, title),
      h('p', {}, text),
      h(
        'form',
        { method: 'dialog', class: 'actions' },
        h('button', { value: 'no', class: 'secondary', autofocus: true }, 'Cancel'),
        h('button', { value: 'yes', class: 'danger' }, action),
      ),
    );
    d.addEventListener('close', () => {
      resolve(d.returnValue === 'yes');
      d.remove();
    });
    document.body.append(d);
    d.showModal();
  });
}

/** A modal with content; resolves when it closes. `body(close)` builds the content. */
export function modal(title, body) {
  const d = h('dialog', { class: 'modal', 'aria-label': title });
  const close = () => d.close();
  fill(d, h('div', { class: 'modal-head' }, h('h2', {}, title), h('button', { class: 'icon', 'aria-label': 'Close', onclick: close }, '×')), body(close));
  document.body.append(d);
  d.addEventListener('close', () => d.remove());
  d.showModal();
  return d;
}

/**
 * A table that pages through a list of the API: `load({cursor, limit})`
 * answers `{items, next_cursor, total}`. Never more than one page in
 * memory; Previous goes back by the cursors seen.
 */
export function pagedTable({ columns, load, limit = 50, empty = 'Nothing yet.', rowAttrs, caption }) {
  const state = { cursors: [null], index: 0, total: 0, next: null };
  const tbody = h('tbody');
  const info = h('span', { class: 'page-info', 'aria-live': 'polite' });
  const prev = h('button', { class: 'secondary', onclick: () => go(state.index - 1) }, '← Previous');
  const next = h('button', { class: 'secondary', onclick: () => go(state.index + 1) }, 'Next →');
  const err = h('div');
  const table = h(
    'table',
    { class: 'list' },
    caption ? h('caption', {}, caption) : null,
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.class }, c.label)))),
    tbody,
  );
  const el = h('div', { class: 'paged' }, err, h('div', { class: 'table-wrap' }, table), h('div', { class: 'pager' }, prev, info, next));
  let seq = 0;

  async function go(index) {
    if (index < 0) return;
    if (index >= state.cursors.length) {
      if (!state.next) return;
      state.cursors.push(state.next);
    }
    state.index = index;
    await render();
  }

  async function render() {
    const my = ++seq;
    let page;
    try {
      page = await load({ cursor: state.cursors[state.index] || undefined, limit });
    } catch (e) {
      if (my !== seq) return;
      fill(err, errorBox(e));
      return;
    }
    if (my !== seq) return;
    fill(err);
    state.total = page.total;
    state.next = page.next_cursor;
    state.cursors.length = state.index + 1;
    const rows = page.items.map((row) => h('tr', rowAttrs ? rowAttrs(row) : {}, columns.map((c) => h('td', { class: c.class, 'data-label': c.label }, c.cell(row)))));
    fill(tbody, rows.length ? rows : h('tr', {}, h('td', { colspan: columns.length, class: 'empty' }, empty)));
    const first = state.index * limit;
    info.textContent = page.items.length ? `${(first + 1).toLocaleString()}–${(first + page.items.length).toLocaleString()} of ${page.total.toLocaleString()}` : `0 of ${page.total.toLocaleString()}`;
    prev.disabled = state.index === 0;
    next.disabled = !state.next;
  }

  return {
    el,
    /** Reloads the page shown (live updates). */
    refresh: render,
    /** Back to the first page (a filter changed). */
    reset: () => {
      state.cursors = [null];
      state.index = 0;
      return render();
    },
  };
}

/** A card: a titled section. */
export function card(title, ...children) {
  return h('section', { class: 'card' }, title ? h('h2', {}, title) : null, ...children);
}

/** A definition list of [term, value] pairs. */
export function facts(pairs) {
  return h(
    'dl',
    { class: 'facts' },
    pairs.filter(Boolean).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v ?? '—')]),
  );
}

/** Marks a form as being edited from its first change until `done`. */
export function trackEditing(form) {
  form.dataset.editing = '';
  form.addEventListener('input', () => (form.dataset.editing = 'yes'));
  form.addEventListener('change', () => (form.dataset.editing = 'yes'));
  return () => (form.dataset.editing = '');
}

/** A button that shows it is busy while `f` runs. */
export function busy(button, f) {
  return async (ev) => {
    ev?.preventDefault?.();
    if (button.disabled) return;
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
    try {
      await f(ev);
    } finally {
      button.disabled = false;
      button.removeAttribute('aria-busy');
    }
  };
}

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/;

/**
 * Any JSON value as a person reads it: objects as term/value lists (nested),
 * arrays as numbered lists, times in local time, true/false as Yes/No.
 */
export function objectView(v, depth = 0) {
  if (v === null || v === undefined) return h('span', { class: 'muted' }, '—');
  if (typeof v === 'boolean') return v ? 'Yes' : 'No';
  if (typeof v === 'number') return v.toLocaleString();
  if (typeof v === 'string') return ISO_TIME.test(v) && !isNaN(new Date(v)) ? new Date(v).toLocaleString() : v;
  if (Array.isArray(v)) {
    if (!v.length) return h('span', { class: 'muted' }, 'none');
    if (depth > 4) return `${v.length} items`;
    return h('ol', { class: 'values' }, v.slice(0, 100).map((x) => h('li', {}, objectView(x, depth + 1))), v.length > 100 ? h('li', { class: 'muted' }, `and ${v.length - 100} more`) : null);
  }
  const entries = Object.entries(v).filter(([k]) => k !== 'customData');
  if (!entries.length) return h('span', { class: 'muted' }, 'empty');
  if (depth > 4) return `${entries.length} fields`;
  return h('dl', { class: 'facts nested' }, entries.map(([k, x]) => [h('dt', {}, k), h('dd', {}, objectView(x, depth + 1))]));
}

/** A table of rows already loaded (no paging): columns as in `pagedTable`. */
export function staticTable({ columns, rows, empty = 'None.', rowAttrs, caption }) {
  const body = rows.length
    ? rows.map((row) => h('tr', rowAttrs ? rowAttrs(row) : {}, columns.map((c) => h('td', { class: c.class, 'data-label': c.label }, c.cell(row)))))
    : h('tr', {}, h('td', { colspan: columns.length, class: 'empty' }, empty));
  return h(
    'div',
    { class: 'table-wrap' },
    h('table', { class: 'list' }, caption ? h('caption', {}, caption) : null, h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.class }, c.label)))), h('tbody', {}, body)),
  );
}

/**
 * A modal form that does one thing: `fields` above an error box, the
 * action button and Cancel. On a valid submit, `run(refuse)` runs with the
 * button busy: an API error it throws, or a reason it gives `refuse`,
 * shows in the box and keeps the dialog open (as does answering false,
 * e.g. not confirmed); otherwise the dialog closes.
 */
export function formDialog(title, { fields, action, danger = false, focus, run }) {
  return modal(title, (close) => {
    const err = h('div');
    const go = h('button', { type: 'submit', class: danger ? 'danger' : undefined }, action);
    const form = h('form', { class: 'stack' }, fields, err, h('div', { class: 'actions' }, go, h('button', { type: 'button', class: 'secondary', onclick: close }, 'Cancel')));
    trackEditing(form);
    const refuse = (reason) => {
      fill(err, h('p', { class: 'error', role: 'alert' }, reason));
      return false;
    };
    form.addEventListener(
      'submit',
      busy(go, async () => {
        if (!form.reportValidity()) return;
        try {
          if ((await run(refuse)) === false) return;
        } catch (e) {
          fill(err, errorBox(e));
          return;
        }
        form.dataset.editing = '';
        close();
      }),
    );
    if (focus) queueMicrotask(() => focus.focus());
    return form;
  });
}
