// Overview: the last hour (or another window) per minute, pending deliveries, failing endpoints.

import { get } from '../api.js';
import { h, replace, when, num, enabledPill, errorSlot, showError } from '../dom.js';
import { pageHead, card } from '../layout.js';
import { href } from '../router.js';
import { barChart } from '../widgets/chart.js';
import { dataTable } from '../widgets/table.js';
import { select, toggle } from '../widgets/forms.js';

const WINDOWS = [
  ['15', 'Last 15 minutes'],
  ['60', 'Last hour'],
  ['360', 'Last 6 hours'],
  ['1440', 'Last 24 hours'],
];

export function render(root, ctx) {
  const refresh = h('button', { type: 'button', class: 'btn', id: 'overview-refresh' }, 'Refresh');
  const windowSel = select({ label: 'Window', name: 'window', options: WINDOWS, value: ctx.query.get('minutes') || '60' });
  const auto = toggle({ label: 'Auto refresh every 30 s', name: 'auto', checked: true });
  const updated = h('span', { class: 'muted', 'aria-live': 'polite' });
  const error = errorSlot();
  const stats = h('div', { class: 'stats' });
  const charts = h('div', { class: 'grid-3' });
  const failing = dataTable({
    label: 'Failing endpoints',
    empty: 'No failing endpoints: every endpoint\'s last delivery succeeded.',
    columns: [
      { label: 'id', cell: (e) => h('a', { href: href('webhooks', e.id) }, `#${e.id}`) },
      { label: 'URL', cell: (e) => h('a', { href: href('webhooks', e.id), class: 'url' }, e.url) },
      { label: 'status', cell: (e) => h('span', null, enabledPill(e.enabled), e.disabledReason ? h('span', { class: 'muted' }, ` ${e.disabledReason}`) : null) },
      { label: 'failing since', cell: (e) => when(e.failingSince) },
      { label: '', cell: (e) => h('a', { href: href('deliveries', { endpointId: e.id, status: 'failed' }) }, 'failed deliveries') },
    ],
  });

  root.append(
    pageHead({ title: 'Overview', actions: [refresh] }),
    h('div', { class: 'toolbar' }, windowSel.el, auto.el, updated),
    error, stats, charts,
    card('Failing endpoints', failing.el),
  );

  let busy = false;
  async function load() {
    if (busy) return;
    busy = true;
    refresh.disabled = true;
    try {
      const minutes = Number(windowSel.input.value) || 60;
      // The server takes a window of at most 24 hours and floors it to the minute:
      // 30 s of slack keeps "the last 24 hours" inside that bound when the request lands.
      const since = new Date(Date.now() - minutes * 60_000 + 30_000);
      const { data } = await get('/api/v1/stats', { since: since.toISOString() });
      showError(error, null);
      const mins = Array.isArray(data.minutes) ? data.minutes : [];
      const totals = data.totals || {};
      const series = (k) => mins.map((m) => ({ at: m.minute, value: Number(m[k]) || 0 }));
      const failingList = Array.isArray(data.failingEndpoints) ? data.failingEndpoints : [];
      replace(stats,
        h('div', { class: 'stat' }, h('span', { class: 'label' }, 'Pending deliveries'),
          h('a', { class: 'value', id: 'stat-pending', href: href('deliveries', { status: 'pending' }) }, num(data.pendingDeliveries))),
        h('div', { class: 'stat' }, h('span', { class: 'label' }, 'Failing endpoints'),
          h('span', { class: 'value', id: 'stat-failing' }, num(failingList.length))),
        h('div', { class: 'stat' }, h('span', { class: 'label' }, 'Window'),
          h('span', { class: 'window' }, when(data.since), ' → ', when(data.until))));
      replace(charts,
        barChart({ id: 'chart-lead-events', title: 'Lead events ingested', total: totals.leadEvents ?? 0, points: series('leadEvents'), barClass: 'bar-lead' }),
        barChart({ id: 'chart-succeeded', title: 'Deliveries succeeded', total: totals.deliveriesSucceeded ?? 0, points: series('deliveriesSucceeded'), barClass: 'bar-ok' }),
        barChart({ id: 'chart-failed', title: 'Deliveries failed', total: totals.deliveriesFailed ?? 0, points: series('deliveriesFailed'), barClass: 'bar-bad' }));
      failing.setRows(failingList);
      replace(updated, 'Updated ', when(data.until || new Date().toISOString()));
    } catch (e) {
      showError(error, e);
    } finally {
      busy = false;
      refresh.disabled = false;
    }
  }

  refresh.addEventListener('click', load);
  windowSel.input.addEventListener('change', load);
  const timer = setInterval(() => { if (auto.input.checked && !document.hidden) load(); }, 30_000);
  ctx.onCleanup(() => clearInterval(timer));
  return load();
}
