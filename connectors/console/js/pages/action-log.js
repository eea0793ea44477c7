// An action's log (seed 003 "Logging"): its runs newest first, filtered by outcome, each
// with its payload and the receiver's response.

import { get } from '../api.js';
import { h, when, pill, pretty, props, errorSlot, showError } from '../dom.js';
import { pageHead, card } from '../layout.js';
import { href, go } from '../router.js';
import { select } from '../widgets/forms.js';
import { pager } from '../widgets/pager.js';

export async function render(root, ctx) {
  const { id, aid } = ctx.params;
  const error = errorSlot();
  const head = pageHead({ title: `Action ${aid} log`, crumbs: [['Triggers', href('triggers')], [`Trigger ${id}`, href('triggers', id)]] });
  const status = select({ label: 'Outcome', name: 'status', value: ctx.query.get('status') || '',
    options: [['', 'All runs'], ['succeeded', 'Succeeded'], ['failed', 'Failed'], ['pending', 'Pending']] });
  const order = select({ label: 'Order', name: 'order', value: ctx.query.get('order') || 'desc',
    options: [['desc', 'Newest first'], ['asc', 'Oldest first']] });
  const filterForm = h('form', { class: 'toolbar', novalidate: true, id: 'log-filter' }, status.el, order.el,
    h('button', { type: 'submit', class: 'btn' }, 'Filter'));
  filterForm.addEventListener('submit', (e) => {
    e.preventDefault();
    go(href('triggers', id, 'actions', aid, { status: status.input.value, order: order.input.value === 'desc' ? '' : order.input.value }));
  });
  status.input.addEventListener('change', () => filterForm.requestSubmit());

  const info = h('p', { class: 'muted' });
  const tbody = h('tbody');
  const tableWrap = h('div', { class: 'table-wrap', role: 'region', 'aria-label': 'Action runs', tabindex: '0' },
    h('table', null,
      h('thead', null, h('tr', null, ['run', 'state', 'delivered', 'attempts', 'response', 'created', ''].map((l) =>
        h('th', { scope: 'col', class: l === 'attempts' ? 'num' : null }, l)))),
      tbody));
  const empty = h('p', { class: 'empty' }, ctx.query.get('status')
    ? `No ${ctx.query.get('status')} runs. Choose "All runs" to see every run.`
    : 'No runs yet: the action runs each time its trigger fires (POST /api/v1/events of the trigger\'s type).');
  let count = 0;
  const table = {
    el: h('div', null, tableWrap, empty),
    setRows(rows) { tbody.textContent = ''; count = 0; this.add(rows); },
    add(rows) {
      for (const r of rows) {
        const detailRow = h('tr', { class: 'detail-row hidden' }, h('td', { colspan: '7' }, runDetails(r)));
        const toggle = h('button', { type: 'button', class: 'btn small', 'aria-expanded': 'false', 'aria-label': `Payload and response of run ${r.id}`, dataset: { run: r.id } }, 'Details');
        toggle.addEventListener('click', () => {
          const open = detailRow.classList.toggle('hidden') === false;
          toggle.setAttribute('aria-expanded', String(open));
        });
        const st = r.response && r.response.status !== null && r.response.status !== undefined ? String(r.response.status) : null;
        tbody.append(h('tr', { class: 'run-row' },
          h('td', null, h('a', { href: href('deliveries', r.id), class: 'mono', title: r.id }, shortId(r.id))),
          h('td', null, pill(r.state)),
          h('td', null, r.delivered ? pill('delivered', 'ok') : pill('not delivered', '')),
          h('td', { class: 'num' }, String(r.attempts)),
          h('td', null, st ? `HTTP ${st}` : (r.response && r.response.error ? 'error' : h('span', { class: 'muted' }, '—'))),
          h('td', null, when(r.createdAt)),
          h('td', null, toggle)), detailRow);
        count += 1;
      }
      tableWrap.classList.toggle('hidden', count === 0);
      empty.classList.toggle('hidden', count !== 0);
    },
  };
  const query = {};
  if (ctx.query.get('status')) query.status = ctx.query.get('status');
  if (ctx.query.get('order')) query.order = ctx.query.get('order');
  const list = pager({
    noun: ['run', 'runs'],
    fetchPage: async (cursor) => {
      const { data } = await get(`/api/v1/triggers/${encodeURIComponent(id)}/actions/${encodeURIComponent(aid)}/log`, { ...query, limit: 50, cursor });
      return { rows: data.data || [], next: data.nextCursor };
    },
    onRows: (rows, first) => (first ? table.setRows(rows) : table.add(rows)),
  });

  root.append(head, error, info, card(null, filterForm, table.el, list.el));
  get(`/api/v1/triggers/${encodeURIComponent(id)}/actions/${encodeURIComponent(aid)}`).then(({ data: a }) => {
    root.querySelector('h1').textContent = `Log of action "${a.name}"`;
    document.title = `Log of ${a.name} · leadstream`;
    info.textContent = `Runs of "${a.name}" (POST ${a.url}), newest first by default. A run succeeds on a 2xx; 5xx and timeouts are retried up to five attempts; other 4xx are not retried.`;
  }).catch((e) => showError(error, e));
  await list.reload();
}

/** msg_01m94…5w8yhxbt: enough to tell runs apart; the full id is the title and the link. */
function shortId(id) {
  return id && id.length > 18 ? `${id.slice(0, 9)}…${id.slice(-8)}` : id;
}

function runDetails(r) {
  const res = r.response || {};
  return h('div', { class: 'grid-2 run-details' },
    h('div', null, h('h3', null, 'Payload'), h('pre', { class: 'run-payload' }, pretty(r.payload)),
      h('p', { class: 'muted' }, 'apptoto_id ', h('span', { class: 'mono' }, r.apptotoId || '—')),
      h('p', null, 'Run ', h('a', { href: href('deliveries', r.id), class: 'mono' }, r.id), ` updated `, when(r.updatedAt))),
    h('div', { class: 'run-response' }, h('h3', null, 'Response'),
      props([
        ['Status', res.status === null || res.status === undefined ? null : String(res.status)],
        ['Error', res.error || null],
      ]),
      res.body ? h('pre', null, res.body) : h('p', { class: 'muted' }, 'No response body.')));
}
