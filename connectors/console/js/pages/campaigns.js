// Campaigns: the list with each campaign's state and the transitions it allows; create.

import { get, post } from '../api.js';
import { h, when, pill, num, errorSlot, showError } from '../dom.js';
import { pageHead, card } from '../layout.js';
import { href, go } from '../router.js';
import { adminOnly } from '../session.js';
import { field, select, placeError, clearErrors } from '../widgets/forms.js';
import { formDialog, confirmDialog } from '../widgets/dialog.js';
import { dataTable } from '../widgets/table.js';
import { pager } from '../widgets/pager.js';
import { toast } from '../widgets/toast.js';
import { allEndpoints } from './webhooks.js';

/** Which transitions each state allows (docs/api.md, Campaigns). */
export const TRANSITIONS = {
  draft: ['schedule', 'cancel'],
  scheduled: ['pause', 'cancel'],
  running: ['pause', 'cancel'],
  paused: ['resume', 'cancel'],
  completed: [],
  cancelled: [],
};
const LABEL = { schedule: 'Schedule', pause: 'Pause', resume: 'Resume', cancel: 'Cancel campaign' };

/**
 * Buttons for the transitions `c.state` allows. A 409 (the state changed meanwhile) or any
 * other error is shown in `errorEl`; `onChange(campaign)` gets the campaign as changed.
 */
export function transitionButtons(c, { errorEl, onChange, small = true }) {
  const allowed = TRANSITIONS[c.state] || [];
  if (!allowed.length) return h('span', { class: 'muted' }, c.state === 'completed' ? 'every send emitted' : 'final');
  return h('span', { class: 'row-actions' }, allowed.map((t) => {
    const b = adminOnly(h('button', { type: 'button', class: ['btn', small ? 'small' : null, t === 'cancel' ? 'danger' : null],
      dataset: { transition: t, campaign: c.id }, 'aria-label': `${LABEL[t]} ${c.name}` }, t === 'cancel' && small ? 'Cancel' : LABEL[t]));
    b.addEventListener('click', async () => {
      showError(errorEl, null);
      const run = async () => (await post(`/api/v1/campaigns/${c.id}/${t}`, {})).data;
      if (t === 'cancel') {
        const done = await confirmDialog({
          title: `Cancel campaign "${c.name}"?`,
          message: 'A cancelled campaign is final: its sends that are not emitted yet never will be.',
          confirmLabel: 'Cancel campaign',
          action: run,
        });
        if (done) { toast(`Campaign ${c.id} cancelled`); onChange(done); }
        return;
      }
      b.disabled = true;
      try {
        const changed = await run();
        toast(`Campaign ${c.id} is ${changed.state}`);
        onChange(changed);
      } catch (e) {
        showError(errorEl, `${c.name}: ${e.message}`);
        b.disabled = false;
      }
    });
    return b;
  }));
}

function createDialog() {
  const name = field({ label: 'Name', name: 'name', hint: '1 to 256 characters.' });
  const targetUrl = h('input', { type: 'radio', name: 'target', id: 'target-url', value: 'url', checked: true });
  const targetEp = h('input', { type: 'radio', name: 'target', id: 'target-endpoint', value: 'endpoint' });
  const url = field({ label: 'Delivery URL', name: 'deliveryUrl', type: 'url', placeholder: 'https://sender.example.com/sends',
    hint: 'Registered as a webhook endpoint subscribed to campaign_send, with its own signing secret.' });
  const endpoint = select({ label: 'Endpoint', name: 'endpointId', options: [['', 'Loading endpoints…']] });
  const fields = { name, deliveryUrl: url, endpointId: endpoint };
  const sync = () => {
    url.el.classList.toggle('hidden', !targetUrl.checked);
    endpoint.el.classList.toggle('hidden', targetUrl.checked);
  };
  targetUrl.addEventListener('change', sync);
  targetEp.addEventListener('change', sync);
  allEndpoints().then((all) => {
    const sel = endpoint.input;
    sel.textContent = '';
    const reg = all.filter((e) => e.kind !== 'settings');
    if (!reg.length) sel.append(h('option', { value: '' }, 'No endpoints yet: use a delivery URL'));
    for (const e of reg) sel.append(h('option', { value: String(e.id) }, `#${e.id} ${e.webhook}`));
  }).catch((e) => showError(endpoint.error, e));
  sync();
  return formDialog({
    title: 'New campaign',
    submitLabel: 'Create campaign',
    build: (f) => f.append(name.el,
      h('fieldset', null, h('legend', null, 'Deliveries go to'),
        h('label', { class: 'radio', for: 'target-url' }, targetUrl, 'A new delivery URL'),
        h('label', { class: 'radio', for: 'target-endpoint' }, targetEp, 'An existing endpoint')),
      url.el, endpoint.el),
    onSubmit: async () => {
      clearErrors(fields);
      const body = { name: name.input.value };
      if (targetUrl.checked) body.deliveryUrl = url.input.value.trim();
      else body.endpointId = Number(endpoint.input.value);
      return (await post('/api/v1/campaigns', body)).data;
    },
    onError: (err, general) => { placeError(err, fields, general); return true; },
  }).done;
}

export function render(root) {
  const create = adminOnly(h('button', { type: 'button', class: 'btn primary', id: 'new-campaign' }, 'New campaign'));
  const error = errorSlot();
  error.id = 'campaigns-error';
  const table = dataTable({
    label: 'Campaigns',
    empty: 'No campaigns yet. Click "New campaign", upload its audience, add a send, then schedule it.',
    rowHref: (c) => href('campaigns', c.id),
    columns: [
      { label: 'id', cell: (c) => h('a', { href: href('campaigns', c.id) }, String(c.id)) },
      { label: 'name', cell: (c) => h('a', { href: href('campaigns', c.id), class: 'campaign-name' }, c.name) },
      { label: 'state', cell: (c) => h('span', { class: 'campaign-state', dataset: { campaign: c.id } }, pill(c.state)) },
      { label: 'audience', num: true, cell: (c) => num(c.audienceSize) },
      { label: 'delivers to', cell: (c) => h('a', { href: href('webhooks', c.endpointId), class: 'url' }, c.deliveryUrl || `endpoint #${c.endpointId}`) },
      { label: 'created', cell: (c) => when(c.createdAt) },
      { label: 'actions', cell: (c) => transitionButtons(c, { errorEl: error, onChange: () => list.reload() }) },
    ],
  });
  const list = pager({
    noun: ['campaign', 'campaigns'],
    fetchPage: async (cursor) => {
      const { data } = await get('/api/v1/campaigns', { limit: 50, cursor });
      return { rows: data.data || [], next: data.nextCursor };
    },
    onRows: (rows, first) => (first ? table.setRows(rows) : table.add(rows)),
  });
  create.addEventListener('click', async () => {
    const c = await createDialog();
    if (c) { toast(`Campaign ${c.id} created`); go(href('campaigns', c.id)); }
  });
  root.append(
    pageHead({ title: 'Campaigns', actions: [create] }),
    h('p', { class: 'muted' }, 'States: draft → scheduled → running → completed, plus paused and cancelled. Schedule from draft; pause while scheduled or running; resume when paused; cancel anything not completed or cancelled.'),
    error,
    card(null, table.el, list.el));
  return list.reload();
}
