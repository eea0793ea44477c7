// Webhooks (seed 002): the endpoint registry, newest first, with search, copy, create and delete.

import { get, post, del } from '../api.js';
import { h, when, enabledPill, pill, errorSlot, showError, num } from '../dom.js';
import { pageHead, card } from '../layout.js';
import { href } from '../router.js';
import { adminOnly } from '../session.js';
import { dataTable } from '../widgets/table.js';
import { pager } from '../widgets/pager.js';
import { field, setFieldError, clearErrors } from '../widgets/forms.js';
import { formDialog, confirmDialog } from '../widgets/dialog.js';
import { copyButton } from '../widgets/copy.js';
import { toast } from '../widgets/toast.js';

const PAGE = 50;

/** Every endpoint of the org (at most org_limits.endpoints), following Link pages. */
export async function allEndpoints() {
  const out = [];
  let next = null;
  let res = await get('/api/webhooks/get', { limit: 1000 });
  for (;;) {
    out.push(...(Array.isArray(res.data) ? res.data : []));
    next = res.next;
    if (!next || out.length > 100_000) break;
    res = await get(next);
  }
  return out;
}

export function render(root, ctx) {
  const createBtn = adminOnly(h('button', { type: 'button', class: 'btn primary', id: 'new-webhook' }, 'New Webhook'));
  const counter = h('span', { class: 'pill info', id: 'active-webhooks', 'aria-live': 'polite' }, 'Active Webhooks: …');
  const counterError = errorSlot();

  const search = h('input', { type: 'search', id: 'webhook-search', name: 'search', placeholder: 'Part of a URL', value: ctx.query.get('search') || '' });
  const searchForm = h('form', { class: 'toolbar', role: 'search', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: 'webhook-search' }, 'Search by URL'), search),
    h('button', { type: 'submit', class: 'btn' }, 'Search'));

  const table = dataTable({
    label: 'Webhook endpoints',
    empty: 'No webhooks yet. Click "New Webhook" to register an endpoint URL.',
    rowHref: (e) => href('webhooks', e.id),
    columns: [
      { label: 'id', cell: (e) => h('a', { href: href('webhooks', e.id), class: 'webhook-id' }, String(e.id)) },
      { label: 'URL', cell: (e) => h('span', { class: 'row-actions' }, h('span', { class: 'url webhook-url' }, e.webhook), copyButton(e.webhook, { what: `URL of webhook ${e.id}` })) },
      { label: 'created', cell: (e) => when(e.created_at) },
      { label: 'status', cell: (e) => h('span', { class: 'tags' }, enabledPill(e.enabled), e.kind === 'settings' ? pill('settings', 'info') : null) },
      { label: 'actions', cell: (e) => deleteButton(e) },
    ],
  });

  const list = pager({
    noun: ['webhook', 'webhooks'],
    fetchPage: async (next) => {
      const res = next ? await get(next) : await get('/api/webhooks/get', { limit: PAGE, search: search.value.trim() });
      return { rows: Array.isArray(res.data) ? res.data : [], next: res.next };
    },
    onRows: (rows, first) => {
      if (first) {
        table.setRows(rows);
        table.setEmpty(search.value.trim()
          ? `No webhook URL contains "${search.value.trim()}". Clear the search to see every endpoint.`
          : 'No webhooks yet. Click "New Webhook" to register an endpoint URL.');
      } else table.add(rows);
    },
  });

  root.append(
    pageHead({ title: 'Webhooks', actions: [counter, createBtn] }),
    counterError,
    card(null, searchForm, table.el, list.el));

  async function count() {
    try {
      const all = await allEndpoints();
      counter.textContent = `Active Webhooks: ${num(all.filter((e) => e.enabled).length)}`;
      counter.title = `${all.length} endpoints registered, ${all.filter((e) => e.enabled).length} enabled`;
      showError(counterError, null);
    } catch (e) {
      counter.textContent = 'Active Webhooks: ?';
      showError(counterError, e);
    }
  }

  function deleteButton(e) {
    const b = adminOnly(h('button', { type: 'button', class: 'btn small danger', 'aria-label': `Delete webhook ${e.id}`, dataset: { delete: e.id } }, 'Delete'));
    b.addEventListener('click', async () => {
      const ok = await confirmDialog({
        title: `Delete webhook ${e.id}?`,
        message: `Deliveries to ${e.webhook} stop now and its pending deliveries fail. This cannot be undone.`,
        confirmLabel: 'Delete',
        action: async () => { await del('/api/webhooks/delete', undefined, { query: { id: e.id } }); return true; },
      });
      if (ok) {
        toast(`Webhook ${e.id} deleted`);
        list.reload();
        count();
      }
    });
    return b;
  }

  createBtn.addEventListener('click', () => {
    const url = field({ label: 'Endpoint URL', name: 'webhook', type: 'url', placeholder: 'https://api.example.com/events',
      hint: 'Must begin with http:// or https://. HTTPS is strongly recommended.' });
    const fields = { webhook: url };
    formDialog({
      title: 'New Webhook',
      submitLabel: 'Create Webhook',
      build: (f) => f.append(url.el),
      onSubmit: async () => {
        clearErrors(fields);
        const { data } = await post('/api/webhooks/create', { webhook: url.input.value.trim() });
        return data.data;
      },
      // A 400 says what is wrong with the URL: show it under the field.
      onError: (err) => {
        if (err.status !== 400) return false;
        setFieldError(url, err.message);
        url.input.focus();
        return true;
      },
    }).done.then((created) => {
      if (created) {
        toast(`Webhook ${created.id} created`);
        search.value = '';
        list.reload();
        count();
      }
    });
  });

  searchForm.addEventListener('submit', (e) => {
    e.preventDefault();
    list.reload();
  });
  let t = null;
  search.addEventListener('input', () => {
    clearTimeout(t);
    t = setTimeout(() => list.reload(), 350);
  });
  ctx.onCleanup(() => clearTimeout(t));

  count();
  return list.reload();
}
