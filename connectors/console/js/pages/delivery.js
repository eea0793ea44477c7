// One delivery: its payload, every attempt, and Retry.

import { get, post } from '../api.js';
import { h, replace, when, pill, props, pretty, errorSlot, showError } from '../dom.js';
import { pageHead, card, head } from '../layout.js';
import { href } from '../router.js';
import { adminOnly } from '../session.js';
import { dataTable } from '../widgets/table.js';
import { busy } from '../widgets/forms.js';
import { toast } from '../widgets/toast.js';

export async function render(root, ctx) {
  const id = ctx.params.id;
  const error = errorSlot();
  const retry = adminOnly(h('button', { type: 'button', class: 'btn primary', id: 'retry-delivery' }, 'Retry'));
  const retryError = errorSlot();
  retryError.id = 'retry-error';
  const retryOk = h('p', { class: 'success hidden', role: 'status', id: 'retry-result' });
  const summary = h('div');
  const payload = h('pre', { id: 'delivery-payload', tabindex: '0' });
  const attempts = dataTable({
    label: 'Attempts',
    empty: 'No attempt yet: the first one is due at the delivery\'s next attempt time.',
    columns: [
      { label: '#', num: true, cell: (a) => String(a.attempt) },
      { label: 'time', cell: (a) => when(a.at) },
      { label: 'state', cell: (a) => pill(a.state) },
      { label: 'status', num: true, cell: (a) => (a.responseStatus === null || a.responseStatus === undefined ? null : String(a.responseStatus)) },
      { label: 'duration', num: true, cell: (a) => (a.durationMs === null || a.durationMs === undefined ? null : `${a.durationMs} ms`) },
      { label: 'response body', cell: (a) => (a.responseBody ? h('details', null, h('summary', null, `${a.responseBody.length} chars`), h('pre', null, a.responseBody)) : null) },
      { label: 'error', cell: (a) => (a.error ? h('span', { class: 'break' }, a.error) : null) },
      { label: 'url', cell: (a) => (a.url ? h('span', { class: 'url' }, a.url) : null) },
    ],
  });
  const refresh = head(h('button', { type: 'button', class: 'btn small' }, 'Refresh'));

  root.append(
    pageHead({ title: `Delivery ${id}`, crumbs: [['Deliveries', href('deliveries')]], actions: [retry] }),
    retryError, retryOk, error,
    card('Summary', summary),
    card('Attempts', refresh, attempts.el),
    card('Payload', h('p', { class: 'muted' }, 'Byte for byte what was signed and sent, pretty-printed.'), payload));

  async function load() {
    try {
      const { data: d } = await get(`/api/v1/deliveries/${encodeURIComponent(id)}`);
      showError(error, null);
      replace(summary, props([
        ['State', h('span', { id: 'delivery-state' }, pill(d.state))],
        ['Event type', d.eventType],
        ['Event id', h('span', { class: 'mono' }, d.eventId)],
        ['Endpoint', h('a', { href: href('webhooks', d.endpointId) }, `#${d.endpointId}`)],
        ['URL', h('span', { class: 'url' }, d.url)],
        ['Attempts', h('span', { id: 'delivery-attempts' }, String(Array.isArray(d.attempts) ? d.attempts.length : d.attempts))],
        ['Last status', d.lastStatus === null || d.lastStatus === undefined ? null : String(d.lastStatus)],
        ['Last error', d.lastError || null],
        ['Next attempt', when(d.nextAttemptAt)],
        ['Created', when(d.createdAt)],
        ['Updated', when(d.updatedAt)],
      ]));
      payload.textContent = pretty(d.payload);
      attempts.setRows(Array.isArray(d.attempts) ? d.attempts : []);
      return d;
    } catch (e) {
      showError(error, e);
      return null;
    }
  }

  refresh.addEventListener('click', load);
  retry.addEventListener('click', () => busy(retry, async () => {
    showError(retryError, null);
    retryOk.classList.add('hidden');
    try {
      const { data } = await post(`/api/v1/deliveries/${encodeURIComponent(id)}/retry`, {});
      retryOk.textContent = `Retry queued: delivery ${data.id} is ${data.state}; one attempt now.`;
      retryOk.classList.remove('hidden');
      toast('Retry queued');
      await load();
    } catch (e) {
      showError(retryError, e);
    }
  }));
  await load();
}
