// Deliveries: the delivery log with filters, sort and cursor paging. Filters live in
// the address (#/deliveries?status=failed&endpointId=3), so a filtered view can be linked.

import { get } from '../api.js';
import { h, when, pill, errorSlot, showError, localInputToRfc3339, dateToLocalInput } from '../dom.js';
import { pageHead, card } from '../layout.js';
import { href, go } from '../router.js';
import { field, select } from '../widgets/forms.js';
import { dataTable } from '../widgets/table.js';
import { pager } from '../widgets/pager.js';
import { allEndpoints } from './webhooks.js';

/** Columns of a delivery table (shared with the endpoint page). */
export function deliveryColumns({ endpoint = true } = {}) {
  return [
    { label: 'id', cell: (d) => h('a', { href: href('deliveries', d.id), class: 'mono delivery-id' }, d.id) },
    { label: 'event type', cell: (d) => d.eventType },
    endpoint ? { label: 'endpoint', cell: (d) => h('a', { href: href('webhooks', d.endpointId), title: d.url }, `#${d.endpointId}`) } : null,
    { label: 'state', cell: (d) => pill(d.state) },
    { label: 'attempts', num: true, cell: (d) => String(d.attempts) },
    { label: 'last status', num: true, cell: (d) => (d.lastStatus === null || d.lastStatus === undefined ? null : String(d.lastStatus)) },
    { label: 'last error', cell: (d) => (d.lastError ? h('span', { class: 'break' }, d.lastError) : null) },
    { label: 'created', cell: (d) => when(d.createdAt) },
    { label: 'updated', cell: (d) => when(d.updatedAt) },
  ].filter(Boolean);
}

const FILTERS = ['status', 'eventType', 'endpointId', 'since', 'until', 'sort', 'order', 'limit'];

export function render(root, ctx) {
  const q = ctx.query;
  const status = select({ label: 'Status', name: 'status', value: q.get('status') || '',
    options: [['', 'Any'], ['succeeded', 'Succeeded'], ['failed', 'Failed'], ['pending', 'Pending']] });
  const eventType = field({ label: 'Event type', name: 'eventType', value: q.get('eventType') || '', placeholder: 'appointment_booked' });
  const endpointSel = select({ label: 'Endpoint', name: 'endpointId', value: q.get('endpointId') || '',
    options: [['', 'Any endpoint'], ...(q.get('endpointId') ? [[q.get('endpointId'), `#${q.get('endpointId')}`]] : [])] });
  const toLocal = (iso) => (iso && !Number.isNaN(new Date(iso).getTime()) ? dateToLocalInput(new Date(iso)) : '');
  const since = field({ label: 'Created since', name: 'since', type: 'datetime-local', value: toLocal(q.get('since')) });
  const until = field({ label: 'Created until', name: 'until', type: 'datetime-local', value: toLocal(q.get('until')) });
  const sort = select({ label: 'Sort by', name: 'sort', value: q.get('sort') || 'createdAt',
    options: [['createdAt', 'Created'], ['updatedAt', 'Updated'], ['attempts', 'Attempts'], ['lastStatus', 'Last status']] });
  const order = select({ label: 'Order', name: 'order', value: q.get('order') || 'desc',
    options: [['desc', 'Newest / highest first'], ['asc', 'Oldest / lowest first']] });
  const limit = field({ label: 'Page size', name: 'limit', type: 'number', value: q.get('limit') || '50', attrs: { min: 1, max: 1000 } });
  const apply = h('button', { type: 'submit', class: 'btn primary', id: 'apply-filters' }, 'Apply filters');
  const reset = h('button', { type: 'button', class: 'btn' }, 'Reset');
  const form = h('form', { novalidate: true, id: 'delivery-filters' },
    h('div', { class: 'fields-inline' }, status.el, eventType.el, endpointSel.el, since.el, until.el),
    h('div', { class: 'fields-inline' }, sort.el, order.el, limit.el),
    h('div', { class: 'toolbar' }, apply, reset));

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    go(href('deliveries', {
      status: status.input.value,
      eventType: eventType.input.value.trim(),
      endpointId: endpointSel.input.value,
      since: localInputToRfc3339(since.input.value),
      until: localInputToRfc3339(until.input.value),
      sort: sort.input.value === 'createdAt' ? '' : sort.input.value,
      order: order.input.value === 'desc' ? '' : order.input.value,
      limit: limit.input.value === '50' ? '' : limit.input.value,
    }));
  });
  reset.addEventListener('click', () => go(href('deliveries')));

  const table = dataTable({ label: 'Deliveries', columns: deliveryColumns(), rowHref: (d) => href('deliveries', d.id),
    empty: [...q.keys()].length
      ? 'No delivery matches these filters. Widen the time range or press Reset.'
      : 'No deliveries yet. Register a webhook and publish an event (POST /api/v1/outbound-events).' });
  const query = {};
  for (const k of FILTERS) if (q.get(k)) query[k] = q.get(k);
  const list = pager({
    noun: ['delivery', 'deliveries'],
    fetchPage: async (cursor) => {
      const { data } = await get('/api/v1/deliveries', cursor ? { ...query, cursor } : query);
      return { rows: data.data || [], next: data.nextCursor };
    },
    onRows: (rows, first) => (first ? table.setRows(rows) : table.add(rows)),
  });

  const endpointsError = errorSlot();
  allEndpoints().then((all) => {
    const sel = endpointSel.input;
    const current = q.get('endpointId') || '';
    while (sel.options.length > 1) sel.remove(1);
    for (const e of all) sel.append(h('option', { value: String(e.id), selected: String(e.id) === current }, `#${e.id} ${e.webhook}`));
    if (current && !all.some((e) => String(e.id) === current)) sel.append(h('option', { value: current, selected: true }, `#${current}`));
  }).catch((e) => showError(endpointsError, e));

  root.append(
    pageHead({ title: 'Deliveries' }),
    card('Filters', form, endpointsError),
    card(null, table.el, list.el));
  return list.reload();
}
