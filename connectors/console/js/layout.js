// Page pieces every page uses: the heading with breadcrumbs and actions, cards, notices.

import { h, setTitle } from './dom.js';

/** The page's <h1> (with breadcrumbs [[text, href], ...] and action buttons). */
export function pageHead({ title, crumbs = [], actions = [] }) {
  setTitle(title);
  const crumbNav = crumbs.length
    ? h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' },
      crumbs.map(([text, href], i) => [i ? ' / ' : '', h('a', { href }, text)]))
    : null;
  return h('div', null, crumbNav,
    h('div', { class: 'page-head' },
      h('h1', { tabindex: '-1', class: 'page-title' }, title),
      actions.length ? h('div', { class: 'toolbar' }, actions) : null));
}

export function card(title, ...children) {
  const headExtra = [];
  while (children.length && children[0] && children[0].dataset && children[0].dataset.head) headExtra.push(children.shift());
  return h('section', { class: 'card' },
    title ? h('div', { class: 'card-head' }, h('h2', null, title), headExtra.length ? h('div', { class: 'toolbar' }, headExtra) : null) : null,
    ...children);
}

/** Marks an element to sit in a card's heading row. */
export function head(el) {
  el.dataset.head = 'true';
  return el;
}

export function notice(text, warn = false) {
  return h('p', { class: ['notice', warn ? 'warn' : null], role: 'note' }, text);
}
