// DOM building without innerHTML: every piece of API data becomes a text node.

const SVG_NS = 'http://www.w3.org/2000/svg';

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

function setAttrs(el, attrs, svg) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
    else if (k === 'text') el.textContent = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'style') throw new Error('inline styles are not allowed by the CSP');
    else if (!svg && (k === 'value' || k === 'checked' || k === 'disabled' || k === 'selected' || k === 'hidden' || k === 'required' || k === 'multiple')) el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

/** h('tag', {attrs}, ...children): an HTML element. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs, false);
  append(el, children);
  return el;
}

/** s('tag', {attrs}, ...children): an SVG element. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs, true);
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

let uid = 0;
/** A unique element id with a readable prefix (labels need ids). */
export function id(prefix = 'f') {
  uid += 1;
  return `${prefix}-${uid}`;
}

// ---------- time ----------

const dateFmt = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric',
  hour: '2-digit', minute: '2-digit', second: '2-digit',
});
const shortFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });

export function localText(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : dateFmt.format(d);
}

export function shortTime(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : shortFmt.format(d);
}

/** A <time> in local time with the ISO value as its title; '—' for null. */
export function when(iso) {
  if (iso === null || iso === undefined || iso === '') return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: iso, title: iso, class: 'nowrap' }, localText(iso));
}

/** The value of a datetime-local input (local wall time) as an RFC 3339 UTC instant. */
export function localInputToRfc3339(value) {
  if (!value) return null;
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return null;
  return d.toISOString();
}

/** A Date as the value of a datetime-local input (local wall time, minutes). */
export function dateToLocalInput(d) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

// ---------- small pieces ----------

const STATE_CLASS = {
  succeeded: 'ok', delivered: 'ok', enabled: 'ok', completed: 'ok', running: 'info', active: 'ok',
  failed: 'bad', disabled: 'bad', cancelled: 'bad',
  pending: 'wait', scheduled: 'wait', paused: 'wait',
  draft: '', registry: '', settings: 'info',
};

/** A status pill: color and text, never color alone. */
export function pill(text, kind) {
  const cls = kind !== undefined ? kind : (STATE_CLASS[text] ?? '');
  return h('span', { class: ['pill', cls] }, text);
}

export function enabledPill(enabled) {
  return enabled ? pill('enabled', 'ok') : pill('disabled', 'bad');
}

export function pretty(value) {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'string') {
    try { return JSON.stringify(JSON.parse(value), null, 2); } catch { return value; }
  }
  return JSON.stringify(value, null, 2);
}

export function num(n) {
  return typeof n === 'number' ? n.toLocaleString() : String(n ?? '—');
}

/** A definition list from [label, value] pairs. */
export function props(pairs) {
  const dl = h('dl', { class: 'props' });
  for (const [k, v] of pairs) {
    if (v === undefined) continue;
    dl.append(h('dt', null, k), h('dd', null, v === null ? h('span', { class: 'muted' }, '—') : v));
  }
  return dl;
}

export function emptyState(text) {
  return h('p', { class: 'empty' }, text);
}

/** An error slot: hidden until set; role=alert so it is read out when it appears. */
export function errorSlot() {
  return h('p', { class: 'error hidden', role: 'alert' });
}

export function showError(slot, err) {
  if (!err) {
    slot.textContent = '';
    slot.classList.add('hidden');
    return;
  }
  slot.textContent = typeof err === 'string' ? err : (err.message || String(err));
  slot.classList.remove('hidden');
}

export function setTitle(text) {
  document.title = `${text} · leadstream`;
}
