// A form generated from a JSON schema (the OCPP request schemas: draft-06,
// objects, nested objects, $ref to #/definitions, enums, integers, numbers,
// strings, date-times, booleans and arrays). Required fields are marked and
// checked by the browser; empty optional fields are left out of the value.
// A raw-JSON toggle edits the same value as text.

import { h, fill, nextId } from './ui.js';
import { toLocalInput, fromLocalInput } from './format.js';

/** Follows `$ref`s (`#/definitions/X`, `#/$defs/X`) within the root schema. */
function resolve(schema, root) {
  let s = schema || {};
  for (let i = 0; s.$ref && i < 20; i++) {
    const path = s.$ref.replace(/^#\//, '').split('/');
    let t = root;
    for (const p of path) t = t?.[p];
    s = { ...(t || {}), ...Object.fromEntries(Object.entries(s).filter(([k]) => k !== '$ref')) };
  }
  return s;
}

/** First sentence of a description, short. */
function hint(schema) {
  const d = (schema.description || '').replace(/\s+/g, ' ').trim();
  if (!d) return null;
  const first = d.split(/(?<=\.)\s/)[0];
  return first.length > 160 ? first.slice(0, 157) + '…' : first;
}

function labelFor(name, required, id) {
  return h('label', { for: id }, name, required ? h('span', { class: 'req', title: 'required' }, ' *') : null);
}

/** A node of the form: {el, get() (undefined when unset), set(v)}. */
function build(schemaIn, root, name, required, depth, path) {
  const schema = resolve(schemaIn, root);
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type || (schema.properties ? 'object' : schema.enum ? 'string' : undefined);
  if (type === 'object') return objectNode(schema, root, name, required, depth, path);
  if (type === 'array') return arrayNode(schema, root, name, required, depth, path);
  return scalarNode(schema, type, name, required, path);
}

function scalarNode(schema, type, name, required, path) {
  const id = nextId('sf');
  let input;
  let get;
  let set;
  if (schema.enum) {
    input = h('select', { id, required, name }, required ? null : h('option', { value: '' }, '— not set —'), schema.enum.map((v) => h('option', { value: v }, v)));
    get = () => (input.value === '' ? undefined : input.value);
    set = (v) => (input.value = v ?? (required ? schema.enum[0] : ''));
  } else if (type === 'integer' || type === 'number') {
    input = h('input', { id, name, type: 'number', required, step: type === 'integer' ? '1' : 'any', min: schema.minimum, max: schema.maximum, inputmode: type === 'integer' ? 'numeric' : 'decimal' });
    get = () => (input.value === '' ? undefined : Number(input.value));
    set = (v) => (input.value = v ?? '');
  } else if (type === 'boolean') {
    if (required) {
      input = h('input', { id, name, type: 'checkbox' });
      get = () => input.checked;
      set = (v) => (input.checked = !!v);
    } else {
      input = h('select', { id, name }, h('option', { value: '' }, '— not set —'), h('option', { value: 'true' }, 'true'), h('option', { value: 'false' }, 'false'));
      get = () => (input.value === '' ? undefined : input.value === 'true');
      set = (v) => (input.value = v === undefined || v === null ? '' : String(!!v));
    }
  } else if (type === 'string' && schema.format === 'date-time') {
    input = h('input', { id, name, type: 'datetime-local', required, step: '1' });
    get = () => fromLocalInput(input.value) || undefined;
    set = (v) => (input.value = v ? toLocalInput(v) : '');
  } else if (type === 'string') {
    const long = (schema.maxLength || 0) > 500;
    input = h(long ? 'textarea' : 'input', { id, name, type: long ? undefined : 'text', required, maxlength: schema.maxLength, rows: long ? 3 : undefined });
    get = () => (input.value === '' ? undefined : input.value);
    set = (v) => (input.value = v ?? '');
  } else {
    // anything else (no type): JSON text
    input = h('textarea', { id, name, required, rows: 2, class: 'mono', placeholder: 'JSON' });
    get = () => {
      if (input.value.trim() === '') return undefined;
      try {
        input.setCustomValidity('');
        return JSON.parse(input.value);
      } catch {
        input.setCustomValidity('not valid JSON');
        return undefined;
      }
    };
    set = (v) => (input.value = v === undefined ? '' : JSON.stringify(v));
  }
  input.dataset.path = path;
  const note = hint(schema);
  const el = h(
    'div',
    { class: 'field' + (type === 'boolean' && required ? ' check' : '') },
    labelFor(name, required, id),
    input,
    note ? h('small', { class: 'hint' }, note) : null,
  );
  if (schema.default !== undefined) set(schema.default);
  else set(undefined);
  return { el, get, set };
}

function objectNode(schema, root, name, required, depth, path) {
  const props = Object.entries(schema.properties || {}).filter(([k]) => k !== 'customData');
  const req = new Set(schema.required || []);
  const children = props.map(([k, s]) => [k, build(s, root, k, req.has(k), depth + 1, path ? path + '.' + k : k)]);
  const body = h('div', { class: 'fields' }, children.map(([, c]) => c.el));
  if (depth === 0) {
    return {
      el: body,
      get: () => collect(children),
      set: (v) => children.forEach(([k, c]) => c.set(v?.[k])),
    };
  }
  // nested: a fieldset; an optional one has a switch that includes it
  const include = required ? null : h('input', { type: 'checkbox', id: nextId('inc') });
  const legend = h(
    'legend',
    {},
    include ? h('label', { for: include.id, class: 'inline' }, include, ' ', name) : [name, h('span', { class: 'req', title: 'required' }, ' *')],
  );
  const note = hint(schema);
  const fs = h('fieldset', { class: 'nested' }, legend, note ? h('small', { class: 'hint' }, note) : null, body);
  const toggle = () => {
    const on = !include || include.checked;
    body.hidden = !on;
    // disabled inputs are neither checked nor sent
    body.querySelectorAll('input,select,textarea,button').forEach((i) => (i.disabled = !on));
    if (on) body.querySelectorAll('fieldset.nested').forEach((f) => f.dispatchEvent(new Event('refresh')));
  };
  fs.addEventListener('refresh', toggle);
  if (include) include.addEventListener('change', toggle);
  queueMicrotask(toggle);
  return {
    el: fs,
    get: () => (include && !include.checked ? undefined : collect(children)),
    set: (v) => {
      if (include) include.checked = v !== undefined && v !== null;
      children.forEach(([k, c]) => c.set(v?.[k]));
      toggle();
    },
  };
}

function collect(children) {
  const out = {};
  for (const [k, c] of children) {
    const v = c.get();
    if (v !== undefined) out[k] = v;
  }
  return out;
}

function arrayNode(schema, root, name, required, depth, path) {
  const itemSchema = Array.isArray(schema.items) ? schema.items[0] : schema.items || {};
  const min = schema.minItems || 0;
  const max = schema.maxItems || Infinity;
  const list = h('ol', { class: 'array-items' });
  const items = [];
  const add = h('button', { type: 'button', class: 'secondary small' }, '+ Add ' + name);
  const addItem = (v) => {
    if (items.length >= max) return;
    const node = build(itemSchema, root, name + '[' + items.length + ']', true, depth + 1, path + '.' + items.length);
    const remove = h('button', { type: 'button', class: 'secondary small', 'aria-label': 'Remove this ' + name }, 'Remove');
    const li = h('li', {}, node.el, remove);
    const entry = { node, li };
    remove.addEventListener('click', () => {
      items.splice(items.indexOf(entry), 1);
      li.remove();
      sync();
    });
    items.push(entry);
    list.append(li);
    if (v !== undefined) node.set(v);
    sync();
  };
  const sync = () => {
    add.disabled = items.length >= max;
    items.forEach((e, i) => (e.li.querySelector('button[aria-label^="Remove"]').disabled = items.length <= (required ? min : 0)));
  };
  add.addEventListener('click', () => addItem());
  const note = hint(schema);
  const fs = h('fieldset', { class: 'nested array' }, h('legend', {}, name, required ? h('span', { class: 'req', title: 'required' }, ' *') : null, min ? ` (at least ${min})` : ''), note ? h('small', { class: 'hint' }, note) : null, list, add);
  const set = (v) => {
    items.splice(0).forEach((e) => e.li.remove());
    const arr = Array.isArray(v) ? v : [];
    arr.forEach((x) => addItem(x));
    while (required && items.length < Math.max(min, 1) && items.length < max) addItem();
    sync();
  };
  set(undefined);
  return {
    el: fs,
    get: () => {
      const vals = items.map((e) => e.node.get());
      if (!required && vals.length === 0) return undefined;
      return vals.map((v) => (v === undefined ? {} : v));
    },
    set,
  };
}

/**
 * The form for `schema`: {el, value(), setValue(v), validate()}. `value`
 * reads the form, or the JSON text in raw mode (throws SyntaxError when the
 * text is not JSON).
 */
export function schemaForm(schema) {
  const root = schema || {};
  const node = build(root, root, '', true, 0, '');
  const rawId = nextId('raw');
  const rawToggle = h('input', { type: 'checkbox', id: rawId });
  const raw = h('textarea', { class: 'mono raw', rows: 10, 'aria-label': 'Request as JSON', spellcheck: 'false', hidden: true });
  const err = h('div');
  const formBox = h('div', { class: 'schema-fields' }, node.el);
  rawToggle.addEventListener('change', () => {
    fill(err);
    if (rawToggle.checked) {
      raw.value = JSON.stringify(node.get(), null, 2);
      raw.hidden = false;
      formBox.hidden = true;
    } else {
      try {
        node.set(JSON.parse(raw.value || '{}'));
      } catch (e) {
        rawToggle.checked = true;
        fill(err, h('p', { class: 'error', role: 'alert' }, 'Not valid JSON: ' + e.message));
        return;
      }
      raw.hidden = true;
      formBox.hidden = false;
    }
  });
  const el = h('div', { class: 'schema-form' }, h('div', { class: 'raw-toggle' }, h('label', { for: rawId, class: 'inline' }, rawToggle, ' Edit as raw JSON')), err, formBox, raw);
  return {
    el,
    value: () => (rawToggle.checked ? JSON.parse(raw.value || '{}') : node.get()),
    setValue: (v) => {
      node.set(v);
      if (rawToggle.checked) raw.value = JSON.stringify(v, null, 2);
    },
    isRaw: () => rawToggle.checked,
  };
}
