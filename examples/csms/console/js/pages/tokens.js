// Driver tokens: list (by status, search where the CSMS can), create and
// edit (type, status, group, expiry, shared use, language), prepaid wallet
// balance, delete.

import { get, post, put, del, seg, queryParams, hasRoute } from '../api.js';
import { h, fill, card, pagedTable, pill, field, select, modal, confirm, errorBox, toast, busy, trackEditing } from '../ui.js';
import { time, money, toLocalInput, fromLocalInput } from '../format.js';

const TYPES = ['ISO14443', 'ISO15693', 'eMAID', 'Central', 'KeyCode', 'Local', 'MacAddress', 'NoAuthorization', 'DirectPayment'];
const STATUSES = ['Accepted', 'Blocked', 'Expired', 'Invalid'];

async function walletOf(id) {
  try {
    return await get('/api/wallets/' + seg(id));
  } catch (e) {
    if (e.status === 404) return null;
    throw e;
  }
}

/** Create (token null) or edit a token, with its wallet. */
export async function tokenDialog(token, onSaved) {
  const canPut = await hasRoute('/api/tokens/{id_token}', 'put');
  const wallet = token ? await walletOf(token.id_token).catch(() => null) : null;
  modal(token ? `Token ${token.id_token}` : 'New token', (close) => {
    const id = h('input', { name: 'id_token', required: true, maxlength: 20, value: token?.id_token, disabled: !!token, autocomplete: 'off', spellcheck: 'false' });
    const type = select(TYPES, token?.type || 'ISO14443', { name: 'type' });
    const status = select(STATUSES, token?.status || 'Accepted', { name: 'status' });
    const group = h('input', { name: 'group_id', maxlength: 36, value: token?.group_id, disabled: !canPut, autocomplete: 'off' });
    const expires = h('input', { name: 'expires_at', type: 'datetime-local', value: token?.expires_at ? toLocalInput(token.expires_at) : '', disabled: !canPut });
    const shared = h('input', { name: 'allow_concurrent', type: 'checkbox', checked: !!token?.allow_concurrent, disabled: !canPut });
    const language = h('input', { name: 'language', maxlength: 8, pattern: '[A-Za-z]{2,3}(-[A-Za-z0-9]+)*', value: token?.language, disabled: !canPut, autocomplete: 'off', size: 6 });
    const balance = h('input', { name: 'balance', type: 'number', min: '0', step: '0.01', inputmode: 'decimal', value: wallet?.balance });
    const currency = h('input', { name: 'currency', maxlength: 3, minlength: 3, pattern: '[A-Z]{3}', value: wallet?.currency || 'EUR', size: 4 });
    const err = h('div');
    const save = h('button', { type: 'submit' }, token ? 'Save' : 'Create');
    const form = h(
      'form',
      { class: 'stack' },
      h('div', { class: 'form-grid' }, field('Token (idTag / idToken)', id, 'up to 20 characters'), field('Type', type), field('Status', status)),
      h('div', { class: 'form-grid' }, field('Group', group, canPut ? 'tokens of a group share a session limit' : 'this CSMS cannot store it yet'), field('Expires', expires, 'empty: never')),
      h('div', { class: 'form-grid' }, field('Shared', shared, 'in several sessions at once (else a second start is refused: ConcurrentTx)'), field('Language', language, 'e.g. en, nl-BE: the tariff text shown to the driver')),
      h('fieldset', {}, h('legend', {}, 'Prepaid wallet'), h('div', { class: 'form-grid' }, field('Balance', balance, wallet ? 'now ' + money(wallet.balance, wallet.currency) : 'no wallet: sessions are billed without holds'), field('Currency', currency))),
      err,
      h('div', { class: 'actions' }, save, h('button', { type: 'button', class: 'secondary', onclick: close }, 'Cancel')),
    );
    trackEditing(form);
    form.addEventListener(
      'submit',
      busy(save, async () => {
        if (!form.reportValidity()) return;
        const ident = token ? token.id_token : id.value.trim();
        try {
          const extra = group.value.trim() || expires.value || shared.checked || language.value.trim() || (token && (token.group_id || token.expires_at || token.allow_concurrent || token.language));
          if (!token) await post('/api/tokens', { id_token: ident, type: type.value, status: status.value });
          if (canPut && (token || extra)) {
            await put('/api/tokens/' + seg(ident), { type: type.value, status: status.value, group_id: group.value.trim() || null, expires_at: fromLocalInput(expires.value) || null, allow_concurrent: shared.checked, language: language.value.trim() || null });
          } else if (token && !canPut) {
            await post('/api/tokens', { id_token: ident, type: type.value, status: status.value });
          }
          if (balance.value !== '' && (!wallet || balance.value !== String(wallet.balance) || currency.value !== wallet.currency)) {
            await put('/api/wallets/' + seg(ident), { balance: balance.value, currency: currency.value });
          }
        } catch (e) {
          fill(err, errorBox(e));
          return;
        }
        toast(token ? `Token ${ident} saved.` : `Token ${ident} created.`);
        form.dataset.editing = '';
        close();
        onSaved?.();
      }),
    );
    queueMicrotask(() => (token ? type : id).focus());
    return form;
  });
}

export async function render(view) {
  const params = await queryParams('/api/tokens');
  const canDelete = await hasRoute('/api/tokens/{id_token}', 'delete');
  const q = h('input', { type: 'search', name: 'q', placeholder: 'token contains…', autocomplete: 'off' });
  const status = select([['', 'any'], ...STATUSES.map((s) => [s, s])], '', { name: 'status' });
  const add = h('button', { type: 'button' }, '+ New token');
  const table = pagedTable({
    limit: 50,
    empty: 'No token matches.',
    load: (p) => get('/api/tokens', { ...p, status: status.value, q: params.has('q') ? q.value.trim() : undefined }),
    rowAttrs: (t) => ({ dataset: { token: t.id_token } }),
    columns: [
      { label: 'Token', cell: (t) => h('button', { type: 'button', class: 'link', onclick: () => tokenDialog(t, () => table.refresh()) }, t.id_token) },
      { label: 'Type', cell: (t) => t.type },
      { label: 'Status', cell: (t) => pill(t.status, t.status.toLowerCase()) },
      { label: 'Group', cell: (t) => t.group_id || '—' },
      { label: 'Expires', cell: (t) => (t.expires_at ? time(t.expires_at) : 'never') },
      { label: 'Shared', cell: (t) => (t.allow_concurrent ? 'yes' : 'no') },
      {
        label: 'Wallet',
        class: 'num',
        cell: (t) => {
          const el = h('span', { class: 'muted' }, '…');
          walletOf(t.id_token)
            .then((w) => {
              el.textContent = w ? money(w.balance, w.currency) : '—';
              el.className = '';
            })
            .catch(() => (el.textContent = '?'));
          return el;
        },
      },
      { label: 'Created', cell: (t) => time(t.created_at) },
      {
        label: 'Actions',
        cell: (t) =>
          h(
            'div',
            { class: 'actions' },
            h('button', { type: 'button', class: 'secondary small', 'aria-label': 'Edit ' + t.id_token, onclick: () => tokenDialog(t, () => table.refresh()) }, 'Edit'),
            canDelete
              ? h(
                  'button',
                  {
                    type: 'button',
                    class: 'secondary small',
                    'aria-label': 'Delete ' + t.id_token,
                    onclick: async () => {
                      if (!(await confirm(`Delete token ${t.id_token}?`, 'Stations will no longer accept it (once their local lists and caches are updated).', 'Delete token'))) return;
                      try {
                        await del('/api/tokens/' + seg(t.id_token));
                        toast(`Token ${t.id_token} deleted.`);
                        table.refresh();
                      } catch (e) {
                        toast(e.message, 'error');
                      }
                    },
                  },
                  'Delete',
                )
              : null,
          ),
      },
    ],
  });
  add.addEventListener('click', () => tokenDialog(null, () => table.reset()));
  let debounce;
  q.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => table.reset(), 250);
  });
  status.addEventListener('change', () => table.reset());
  fill(
    view,
    h('div', { class: 'page-head' }, h('h1', {}, 'Tokens'), add),
    card(null, h('form', { class: 'toolbar', role: 'search', 'data-live-keep': true, onsubmit: (e) => (e.preventDefault(), table.reset()) }, params.has('q') ? field('Search', q) : null, field('Status', status)), table.el),
  );
  await table.reset();
  return { dispose: () => clearTimeout(debounce) };
}
