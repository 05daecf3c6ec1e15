// Roaming (OCPI, the CSMS as CPO): partners, issuing a token A for a
// partner that registers with us, registering with a partner, and the
// tokens partners pushed.

import { get, post } from '../api.js';
import { h, fill, card, pagedTable, pill, field, errorBox, toast, busy, trackEditing, facts } from '../ui.js';

export async function render(view) {
  const partnersBox = h('div');
  const issued = h('div', { 'aria-live': 'polite' });
  const regOut = h('div', { 'aria-live': 'polite' });

  async function partners() {
    try {
      const p = await get('/api/ocpi/partners');
      fill(
        partnersBox,
        facts([['Our versions URL', h('code', {}, p.versions_url)]]),
        p.partners.length
          ? h(
              'table',
              { class: 'list' },
              h('thead', {}, h('tr', {}, h('th', {}, 'Partner'), h('th', {}, 'State'), h('th', {}, 'OCPI version'), h('th', {}, 'Roles'), h('th', {}, 'Modules'))),
              h(
                'tbody',
                {},
                p.partners.map((x) =>
                  h(
                    'tr',
                    { dataset: { partner: x.id } },
                    h('td', {}, x.id),
                    h('td', {}, x.registered ? pill('Registered', 'ok') : pill('Token A issued, waiting', 'pending')),
                    h('td', {}, x.version || '—'),
                    h('td', {}, (x.roles || []).map((r) => [r.role, r.party_id && `${r.country_code}-${r.party_id}`].filter(Boolean).join(' ')).join(', ') || '—'),
                    h('td', { class: 'muted' }, (x.modules || []).join(', ') || '—'),
                  ),
                ),
              ),
            )
          : h('p', { class: 'muted' }, 'No partner yet.'),
      );
    } catch (e) {
      fill(partnersBox, errorBox(e));
    }
  }

  // token A for a partner that registers with us
  const name = h('input', { name: 'name', required: true, maxlength: 64, autocomplete: 'off' });
  const issue = h('button', { type: 'submit' }, 'Issue token A');
  const issueForm = h('form', { class: 'stack' }, h('p', { class: 'muted' }, 'Give the partner this token and our versions URL; it registers with us and gets its own credentials.'), field('Partner name', name), h('div', { class: 'actions' }, issue), issued);
  const doneIssue = trackEditing(issueForm);
  issueForm.addEventListener(
    'submit',
    busy(issue, async () => {
      if (!issueForm.reportValidity()) return;
      try {
        const r = await post('/api/ocpi/token-a', { name: name.value.trim() });
        const tokenField = h('input', { readonly: true, value: r.token, class: 'mono', 'aria-label': 'Token A', size: 40 });
        const copy = h('button', { type: 'button', class: 'secondary small' }, 'Copy');
        copy.addEventListener('click', async () => {
          try {
            await navigator.clipboard.writeText(r.token);
            toast('Copied.');
          } catch {
            tokenField.select();
          }
        });
        fill(issued, h('div', { class: 'answer' }, h('strong', {}, 'Token A for ' + name.value.trim() + ' (shown once)'), h('div', { class: 'actions' }, tokenField, copy), facts([['Versions URL', h('code', {}, r.versions_url)]])));
        doneIssue();
        partners();
      } catch (e) {
        fill(issued, errorBox(e));
      }
    }),
  );

  // we register with a partner
  const url = h('input', { name: 'versions_url', type: 'url', required: true, placeholder: 'https://emsp.example/ocpi/versions' });
  const tokenA = h('input', { name: 'token', required: true, autocomplete: 'off', spellcheck: 'false' });
  const reg = h('button', { type: 'submit' }, 'Register with partner');
  const regForm = h('form', { class: 'stack' }, h('p', { class: 'muted' }, 'With the versions URL and token A a partner gave us (we are the credentials sender).'), field('Partner versions URL', url), field('Token A from the partner', tokenA), h('div', { class: 'actions' }, reg), regOut);
  const doneReg = trackEditing(regForm);
  regForm.addEventListener(
    'submit',
    busy(reg, async () => {
      if (!regForm.reportValidity()) return;
      try {
        const r = await post('/api/ocpi/partners', { versions_url: url.value.trim(), token: tokenA.value.trim() });
        fill(regOut, h('p', { class: 'success' }, `Registered with ${r.id || 'the partner'}${r.version ? ' (OCPI ' + r.version + ')' : ''}.`));
        doneReg();
        partners();
      } catch (e) {
        fill(regOut, errorBox(e));
      }
    }),
  );

  const tokens = pagedTable({
    limit: 50,
    empty: 'No partner pushed tokens yet.',
    load: (p) => get('/api/ocpi/tokens', p),
    columns: [
      { label: 'Token', cell: (t) => t.token?.uid || t.key },
      { label: 'Issuer', cell: (t) => [t.token?.country_code, t.token?.party_id].filter(Boolean).join('-') || '—' },
      { label: 'Type', cell: (t) => t.token?.type || '—' },
      { label: 'Valid', cell: (t) => (t.token?.valid === false ? pill('No', 'bad') : pill('Yes', 'ok')) },
      { label: 'Whitelist', cell: (t) => t.token?.whitelist || '—' },
    ],
  });

  fill(view, h('div', { class: 'page-head' }, h('h1', {}, 'Roaming partners')), card('Partners', partnersBox), h('div', { class: 'grid' }, card('A partner registers with us', issueForm), card('We register with a partner', regForm)), card('Tokens from partners', tokens.el));
  await Promise.all([partners(), tokens.reset()]);
  return {
    refresh: async (batch) => {
      if ([...batch.types].some((t) => t.startsWith('ocpi'))) await Promise.all([partners(), tokens.refresh()]);
    },
  };
}
