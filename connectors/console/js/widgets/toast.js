// Short-lived messages in a polite live region (results are also shown in place).

import { h } from '../dom.js';

export function toast(text, kind = '') {
  const box = document.getElementById('toasts');
  if (!box) return;
  const el = h('div', { class: ['toast', kind] }, text);
  box.append(el);
  while (box.children.length > 3) box.firstElementChild.remove();
  setTimeout(() => el.remove(), 4000);
}
