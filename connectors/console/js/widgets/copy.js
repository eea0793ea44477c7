// Copy to the clipboard: navigator.clipboard, else a selected textarea and execCommand.

import { h } from '../dom.js';

export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch { /* permission refused or no focus: fall back */ }
  }
  const area = h('textarea', { readonly: true, 'aria-hidden': 'true', class: 'offscreen-copy' });
  area.value = text;
  area.setAttribute('tabindex', '-1');
  document.body.append(area);
  area.select();
  let ok = false;
  try { ok = document.execCommand('copy'); } catch { ok = false; }
  area.remove();
  return ok;
}

/** A button that copies `getText()` and says "Copied" (or "Copy failed") for a moment. */
export function copyButton(getText, { label = 'Copy', what = '' } = {}) {
  const btn = h('button', { type: 'button', class: 'btn small', 'aria-label': what ? `Copy ${what}` : label }, label);
  let timer = null;
  btn.addEventListener('click', async (e) => {
    e.stopPropagation();
    const ok = await copyText(typeof getText === 'function' ? getText() : getText);
    btn.textContent = ok ? 'Copied' : 'Copy failed: select the text';
    btn.dataset.copied = ok ? 'true' : 'false';
    clearTimeout(timer);
    timer = setTimeout(() => { btn.textContent = label; delete btn.dataset.copied; }, 2500);
  });
  return btn;
}
