// Labelled fields with an error slot under each, and helpers to put an API error
// under the field it names.

import { h, id as newId, errorSlot, showError } from '../dom.js';

/**
 * A labelled input (or `control`, an element you built) with a hint and an error slot.
 * Answers {el, input, error, name}.
 */
export function field({ label, name, type = 'text', value = '', hint = null, placeholder = null,
  required = false, control = null, attrs = {}, className = null }) {
  const fid = newId(name || 'field');
  const input = control || (type === 'textarea'
    ? h('textarea', { ...attrs })
    : h('input', { type, ...attrs }));
  input.id = fid;
  if (name) input.name = name;
  if (placeholder) input.placeholder = placeholder;
  if (required) input.required = true;
  if (value !== null && value !== undefined && !control) input.value = value;
  const error = errorSlot();
  error.id = `${fid}-error`;
  const hintEl = hint ? h('span', { class: 'hint', id: `${fid}-hint` }, hint) : null;
  input.setAttribute('aria-describedby', [hintEl ? hintEl.id : null, error.id].filter(Boolean).join(' '));
  const el = h('div', { class: ['field', className] }, h('label', { for: fid }, label), input, hintEl, error);
  return { el, input, error, name };
}

export function select({ label, name, options, value = '', hint = null, className = null }) {
  const sel = h('select');
  for (const o of options) {
    const [v, text] = Array.isArray(o) ? o : [o, o];
    sel.append(h('option', { value: v, selected: String(v) === String(value) }, text));
  }
  return field({ label, name, control: sel, hint, className });
}

/** A checkbox styled as a switch, labelled `label`. */
export function toggle({ label, name, checked = false }) {
  const fid = newId(name || 'switch');
  const input = h('input', { type: 'checkbox', id: fid, role: 'switch', checked });
  if (name) input.name = name;
  const state = h('span', { class: 'state', 'aria-hidden': 'true' }, checked ? 'on' : 'off');
  input.addEventListener('change', () => { state.textContent = input.checked ? 'on' : 'off'; });
  const el = h('label', { class: 'switch', for: fid }, input, h('span', null, label), state);
  return { el, input, name, error: null };
}

export function setFieldError(f, message) {
  if (!f.error) return;
  showError(f.error, message || null);
  if (message) f.input.setAttribute('aria-invalid', 'true');
  else f.input.removeAttribute('aria-invalid');
}

export function clearErrors(fields, general) {
  for (const f of Object.values(fields)) setFieldError(f, null);
  if (general) showError(general, null);
}

/**
 * Shows `err` under the field whose API name its message mentions (the API's 400s
 * name the field), else in `general`. Answers the field used, if any.
 */
export function placeError(err, fields, general) {
  const message = err && err.message ? err.message : String(err);
  const names = Object.keys(fields).sort((a, b) => b.length - a.length);
  for (const n of names) {
    const re = new RegExp(`(^|[^A-Za-z])${n}([^A-Za-z]|$)`);
    if (re.test(message) && fields[n].error) {
      setFieldError(fields[n], message);
      fields[n].input.focus();
      return fields[n];
    }
  }
  showError(general, message);
  return null;
}

/** A button that shows "…" and is disabled while `fn` runs. */
export async function busy(button, fn) {
  const was = button.disabled;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    return await fn();
  } finally {
    button.disabled = was;
    button.removeAttribute('aria-busy');
  }
}
