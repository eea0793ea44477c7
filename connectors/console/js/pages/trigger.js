// One trigger: its fields (Edit, Delete) and its Webhook Actions (add, toggle, delete, log).

import { get, post, put, del } from '../api.js';
import { h, replace, when, enabledPill, props, errorSlot, showError, id as newId } from '../dom.js';
import { pageHead, card } from '../layout.js';
import { href, go } from '../router.js';
import { adminOnly, canWrite, whyNot } from '../session.js';
import { field, select, placeError, clearErrors, busy } from '../widgets/forms.js';
import { confirmDialog } from '../widgets/dialog.js';
import { dataTable } from '../widgets/table.js';
import { pager } from '../widgets/pager.js';
import { toast } from '../widgets/toast.js';
import { triggerTypeName } from '../trigger-types.js';
import { triggerDialog, deleteTrigger } from './triggers.js';

export async function render(root, ctx) {
  const id = ctx.params.id;
  const error = errorSlot();
  const edit = adminOnly(h('button', { type: 'button', class: 'btn', id: 'edit-trigger' }, 'Edit'));
  const remove = adminOnly(h('button', { type: 'button', class: 'btn danger', id: 'delete-trigger' }, 'Delete'));
  root.append(pageHead({ title: `Trigger ${id}`, crumbs: [['Triggers', href('triggers')]], actions: [edit, remove] }), error);

  let trig;
  try {
    trig = (await get(`/api/v1/triggers/${encodeURIComponent(id)}`)).data;
  } catch (e) {
    showError(error, e);
    edit.disabled = true;
    remove.disabled = true;
    return;
  }
  const title = root.querySelector('h1');
  const details = h('div');
  function showTrigger(t) {
    title.textContent = `Trigger: ${t.name}`;
    document.title = `Trigger ${t.name} · leadstream`;
    replace(details, props([
      ['Name', h('span', { id: 'trigger-name' }, t.name)],
      ['Trigger Type', h('span', { id: 'trigger-type', title: t.type }, `${triggerTypeName(t.type)} (${t.type})`)],
      ['Status', h('span', { id: 'trigger-status' }, enabledPill(t.enabled))],
      ['Description', t.description || null],
      ['Created', when(t.createdAt)],
      ['Updated', when(t.updatedAt)],
    ]));
  }
  showTrigger(trig);

  edit.addEventListener('click', async () => {
    const saved = await triggerDialog(trig);
    if (saved) { trig = saved; showTrigger(trig); toast('Trigger saved'); }
  });
  remove.addEventListener('click', async () => {
    if (await deleteTrigger(trig)) { toast(`Trigger ${trig.id} deleted`); go(href('triggers')); }
  });

  // ---------- actions ----------
  const actionsError = errorSlot();
  actionsError.id = 'actions-error';
  const actions = dataTable({
    label: 'Webhook actions',
    empty: 'No webhook actions yet. Add one below: its URL gets a POST each time this trigger fires.',
    columns: [
      { label: 'id', cell: (a) => String(a.id) },
      { label: 'name', cell: (a) => h('span', { class: 'action-name' }, a.name) },
      { label: 'URL', cell: (a) => h('span', { class: 'url' }, a.url) },
      { label: 'enabled', cell: (a) => actionSwitch(a) },
      { label: 'endpoint', cell: (a) => h('a', { href: href('webhooks', a.endpointId) }, `#${a.endpointId}`) },
      { label: 'created', cell: (a) => when(a.createdAt) },
      { label: '', cell: (a) => h('span', { class: 'row-actions' },
        h('a', { class: 'btn small', href: href('triggers', id, 'actions', a.id), dataset: { log: a.id } }, 'Log'),
        deleteAction(a)) },
    ],
  });
  const list = pager({
    noun: ['action', 'actions'],
    fetchPage: async (cursor) => {
      const { data } = await get(`/api/v1/triggers/${encodeURIComponent(id)}/actions`, { limit: 50, cursor });
      return { rows: data.data || [], next: data.nextCursor };
    },
    onRows: (rows, first) => (first ? actions.setRows(rows) : actions.add(rows)),
  });

  function actionSwitch(a) {
    const sid = newId('action-enabled');
    const input = h('input', { type: 'checkbox', id: sid, role: 'switch', checked: a.enabled, dataset: { toggle: a.id } });
    const state = h('span', { class: 'state' }, a.enabled ? 'on' : 'off');
    if (!canWrite()) { input.disabled = true; input.title = whyNot(); }
    input.addEventListener('change', async () => {
      const want = input.checked;
      input.disabled = true;
      showError(actionsError, null);
      try {
        const { data } = await put(`/api/v1/triggers/${encodeURIComponent(id)}/actions/${a.id}`, { enabled: want });
        a.enabled = data.enabled;
        input.checked = data.enabled;
        state.textContent = data.enabled ? 'on' : 'off';
        toast(`Action ${a.name} ${data.enabled ? 'enabled' : 'disabled'}`);
      } catch (e) {
        input.checked = !want;
        showError(actionsError, e);
      } finally {
        input.disabled = false;
      }
    });
    return h('label', { class: 'switch', for: sid }, input, h('span', { class: 'sr-only' }, `Enabled: ${a.name}`), state);
  }

  function deleteAction(a) {
    const b = adminOnly(h('button', { type: 'button', class: 'btn small danger', 'aria-label': `Delete action ${a.name}`, dataset: { delete: a.id } }, 'Delete'));
    b.addEventListener('click', async () => {
      const ok = await confirmDialog({
        title: `Delete action "${a.name}"?`,
        message: `Its endpoint (#${a.endpointId}) is deleted with it and ${a.url} gets no more runs. This cannot be undone.`,
        confirmLabel: 'Delete action',
        action: async () => { await del(`/api/v1/triggers/${encodeURIComponent(id)}/actions/${a.id}`); return true; },
      });
      if (ok) { toast(`Action ${a.name} deleted`); list.reload(); }
    });
    return b;
  }

  // ---------- add an action ----------
  const type = select({ label: 'Webhook Action Type', name: 'type', options: [['webhook', 'Send webhook notification']] });
  const url = field({ label: 'Webhook URL', name: 'url', type: 'url', placeholder: 'https://hooks.zapier.com/…', hint: 'Gets a POST with the trigger\'s payload each time it fires.' });
  const name = field({ label: 'Name', name: 'name', hint: 'To find the action later.' });
  const addError = errorSlot();
  const addBtn = adminOnly(h('button', { type: 'submit', class: 'btn primary', id: 'add-action' }, 'Add action'));
  const fields = { type, url, name };
  const addForm = h('form', { novalidate: true, id: 'add-action-form' },
    h('fieldset', { disabled: !canWrite() }, h('legend', null, 'Add a webhook action'),
      h('div', { class: 'fields-inline' }, type.el, url.el, name.el)), addError, addBtn);
  addForm.addEventListener('submit', (e) => {
    e.preventDefault();
    clearErrors(fields, addError);
    busy(addBtn, async () => {
      try {
        const body = { type: type.input.value, url: url.input.value.trim() };
        if (name.input.value.trim()) body.name = name.input.value.trim();
        const { data } = await post(`/api/v1/triggers/${encodeURIComponent(id)}/actions`, body);
        toast(`Action ${data.name} added`);
        url.input.value = '';
        name.input.value = '';
        list.reload();
      } catch (err) {
        placeError(err, fields, addError);
      }
    });
  });

  root.append(
    card('Trigger', details),
    card('Webhook Actions', h('p', { class: 'muted' }, 'Each action sends a webhook notification: a signed POST of the trigger\'s payload to its URL, retried on 5xx.'), actionsError, actions.el, list.el),
    card(null, addForm));
  await list.reload();
}
