// Tables that scroll sideways inside their container, with an empty state.

import { h, clear } from '../dom.js';
import { go } from '../router.js';

/**
 * columns: [{label, cell(row) → node|string, num?, className?}]
 * rowHref(row): a hash the row opens when clicked (links and buttons in it keep their own job).
 */
export function dataTable({ columns, rows = [], empty = 'Nothing here yet.', rowHref = null, caption = null, label = null }) {
  const tbody = h('tbody');
  const table = h('table', null,
    caption ? h('caption', { class: 'hidden' }, caption) : null,
    h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)))),
    tbody);
  const wrap = h('div', { class: 'table-wrap', role: 'region', 'aria-label': label || caption || 'table', tabindex: '0' }, table);
  const emptyEl = h('p', { class: 'empty' }, empty);
  const el = h('div', { class: 'table-block' }, wrap, emptyEl);
  let count = 0;

  function refresh() {
    wrap.classList.toggle('hidden', count === 0);
    emptyEl.classList.toggle('hidden', count !== 0);
  }

  function add(more) {
    for (const row of more) {
      const tr = h('tr');
      for (const c of columns) {
        let v = c.cell(row);
        if (v === null || v === undefined || v === '') v = h('span', { class: 'muted' }, '—');
        tr.append(h('td', { class: [c.num ? 'num' : null, c.className] }, v));
      }
      if (rowHref) {
        const target = rowHref(row);
        tr.classList.add('clickable');
        tr.addEventListener('click', (e) => {
          if (e.target.closest('a, button, input, select, textarea, label, summary, details')) return;
          if (window.getSelection && String(window.getSelection())) return;
          go(target);
        });
      }
      tbody.append(tr);
      count += 1;
    }
    refresh();
  }

  function setRows(all) {
    clear(tbody);
    count = 0;
    add(all);
  }

  setRows(rows);
  return { el, tbody, add, setRows, get count() { return count; }, setEmpty(text) { emptyEl.textContent = text; } };
}
