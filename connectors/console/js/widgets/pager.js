// "Load more" for cursor and Link-header paging: never more than one page fetched at a time.

import { h, errorSlot, showError } from '../dom.js';

/**
 * fetchPage(next) → {rows, next}; `next` is null for the first page, then what the last
 * page answered (a cursor or a Link URL). onRows(rows, first) renders them.
 */
export function pager({ fetchPage, onRows, noun = 'rows' }) {
  const error = errorSlot();
  const btn = h('button', { type: 'button', class: 'btn' }, 'Load more');
  const status = h('span', { class: 'muted', 'aria-live': 'polite' });
  const el = h('div', null, error, h('div', { class: 'more' }, btn, status));
  let next = null;
  let shown = 0;
  let busy = false;
  let generation = 0;

  async function load(first) {
    if (busy && !first) return;
    busy = true;
    generation += 1;
    const mine = generation;
    btn.disabled = true;
    showError(error, null);
    try {
      const page = await fetchPage(first ? null : next);
      if (mine !== generation) return;
      if (first) shown = 0;
      next = page.next || null;
      shown += page.rows.length;
      onRows(page.rows, first);
      const [one, many] = Array.isArray(noun) ? noun : [noun, noun];
      status.textContent = shown ? `${shown.toLocaleString()} ${shown === 1 ? one : many} shown${next ? '' : ' (all)'}` : '';
      btn.classList.toggle('hidden', !next);
    } catch (e) {
      if (mine !== generation) return;
      showError(error, e);
      if (first) { onRows([], true); btn.classList.add('hidden'); }
    } finally {
      if (mine === generation) { busy = false; btn.disabled = false; }
    }
  }

  btn.addEventListener('click', () => load(false));
  btn.classList.add('hidden');
  return { el, reload: () => load(true), error };
}
