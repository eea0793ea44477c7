// Triggers (seeds 003, 004): the list, Add, Edit and Delete.

import { get, post, put, del } from '../api.js';
import { h, when, enabledPill } from '../dom.js';
import { pageHead, card } from '../layout.js';
import { href, go } from '../router.js';
import { adminOnly } from '../session.js';
import { field, select, toggle, placeError, clearErrors } from '../widgets/forms.js';
import { formDialog, confirmDialog } from '../widgets/dialog.js';
import { dataTable } from '../widgets/table.js';
import { pager } from '../widgets/pager.js';
import { toast } from '../widgets/toast.js';
import { TRIGGER_TYPES, triggerTypeName } from '../trigger-types.js';

/** The Add / Edit form in a dialog; resolves to the saved trigger (or undefined). */
export function triggerDialog(existing = null) {
  const type = select({ label: 'Trigger Type', name: 'type', value: existing ? existing.type : TRIGGER_TYPES[0][0],
    options: TRIGGER_TYPES, hint: 'The kind of event this trigger watches for.' });
  const name = field({ label: 'Name', name: 'name', value: existing ? existing.name : '', hint: '1 to 256 characters.' });
  const description = field({ label: 'Description', name: 'description', type: 'textarea', value: existing ? existing.description || '' : '' });
  const enabled = toggle({ label: 'Enabled', name: 'enabled', checked: existing ? existing.enabled : true });
  const fields = { type, name, description, enabled };
  return formDialog({
    title: existing ? `Edit trigger ${existing.id}` : 'Add trigger',
    submitLabel: existing ? 'Save trigger' : 'Add trigger',
    build: (f) => f.append(type.el, name.el, description.el, enabled.el),
    onSubmit: async () => {
      clearErrors(fields);
      const body = {
        type: type.input.value,
        name: name.input.value,
        description: description.input.value.trim() || null,
        enabled: enabled.input.checked,
      };
      if (existing) return (await put(`/api/v1/triggers/${existing.id}`, body)).data;
      if (body.description === null) delete body.description;
      return (await post('/api/v1/triggers', body)).data;
    },
    onError: (err, general) => {
      placeError(err, fields, general);
      return true;
    },
  }).done;
}

/** Delete behind a confirmation; resolves true when deleted. */
export function deleteTrigger(t) {
  return confirmDialog({
    title: `Delete trigger "${t.name}"?`,
    message: 'The trigger and all its webhook actions (and their endpoints) are deleted. This cannot be undone.',
    confirmLabel: 'Delete trigger',
    action: async () => { await del(`/api/v1/triggers/${t.id}`); return true; },
  });
}

export function render(root) {
  const add = adminOnly(h('button', { type: 'button', class: 'btn primary', id: 'add-trigger' }, 'Add'));
  const table = dataTable({
    label: 'Triggers',
    empty: 'No triggers yet. Click "Add" to watch for an event type and send webhooks when it happens.',
    rowHref: (t) => href('triggers', t.id),
    columns: [
      { label: 'id', cell: (t) => h('a', { href: href('triggers', t.id) }, String(t.id)) },
      { label: 'name', cell: (t) => h('a', { href: href('triggers', t.id), class: 'trigger-name' }, t.name) },
      { label: 'type', cell: (t) => h('span', { title: t.type }, triggerTypeName(t.type)) },
      { label: 'status', cell: (t) => enabledPill(t.enabled) },
      { label: 'description', cell: (t) => t.description },
      { label: 'created', cell: (t) => when(t.createdAt) },
      { label: 'actions', cell: (t) => h('span', { class: 'row-actions' }, editButton(t), deleteButton(t)) },
    ],
  });
  const list = pager({
    noun: ['trigger', 'triggers'],
    fetchPage: async (cursor) => {
      const { data } = await get('/api/v1/triggers', { limit: 50, cursor });
      return { rows: data.data || [], next: data.nextCursor };
    },
    onRows: (rows, first) => (first ? table.setRows(rows) : table.add(rows)),
  });

  function editButton(t) {
    const b = adminOnly(h('button', { type: 'button', class: 'btn small', 'aria-label': `Edit trigger ${t.name}`, dataset: { edit: t.id } }, 'Edit'));
    b.addEventListener('click', async () => {
      const saved = await triggerDialog(t);
      if (saved) { toast(`Trigger ${saved.id} saved`); list.reload(); }
    });
    return b;
  }
  function deleteButton(t) {
    const b = adminOnly(h('button', { type: 'button', class: 'btn small danger', 'aria-label': `Delete trigger ${t.name}`, dataset: { delete: t.id } }, 'Delete'));
    b.addEventListener('click', async () => {
      if (await deleteTrigger(t)) { toast(`Trigger ${t.id} deleted`); list.reload(); }
    });
    return b;
  }

  add.addEventListener('click', async () => {
    const created = await triggerDialog(null);
    if (created) {
      toast(`Trigger ${created.id} added`);
      go(href('triggers', created.id));
    }
  });

  root.append(
    pageHead({ title: 'Triggers', actions: [add] }),
    h('p', { class: 'muted' }, 'A trigger watches for one type of event (appointments, participants, bookings, messages); its webhook actions run each time one happens.'),
    card(null, table.el, list.el));
  return list.reload();
}
