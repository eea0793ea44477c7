// Hash routing: #/webhooks/5, #/deliveries?status=failed, #/contacts/%2B15551234567.

/** The current hash as {path: ['webhooks', '5'], query: URLSearchParams}. */
export function parseHash(hash = location.hash) {
  let text = hash.replace(/^#/, '');
  if (!text.startsWith('/')) text = `/${text}`;
  const q = text.indexOf('?');
  const pathPart = q >= 0 ? text.slice(0, q) : text;
  const query = new URLSearchParams(q >= 0 ? text.slice(q + 1) : '');
  const path = pathPart.split('/').filter(Boolean).map((p) => {
    try { return decodeURIComponent(p); } catch { return p; }
  });
  return { path, query };
}

/**
 * Matches `path` against patterns such as 'triggers/:id/actions/:aid'.
 * Answers {route, params} for the first pattern that fits, or null.
 */
export function match(routes, path) {
  for (const route of routes) {
    const parts = route.pattern.split('/').filter(Boolean);
    if (parts.length !== path.length) continue;
    const params = {};
    let ok = true;
    for (let i = 0; i < parts.length; i += 1) {
      if (parts[i].startsWith(':')) params[parts[i].slice(1)] = path[i];
      else if (parts[i] !== path[i]) { ok = false; break; }
    }
    if (ok) return { route, params };
  }
  return null;
}

/** A hash link: href('webhooks', 5) → '#/webhooks/5'; query as an object. */
export function href(...parts) {
  let query = null;
  if (parts.length && typeof parts[parts.length - 1] === 'object' && parts[parts.length - 1] !== null) {
    query = parts.pop();
  }
  let out = `#/${parts.map((p) => encodeURIComponent(String(p))).join('/')}`;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== null && v !== undefined && v !== '') q.set(k, v);
    const t = q.toString();
    if (t) out += `?${t}`;
  }
  return out;
}

export function go(hash) {
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent('hashchange'));
  else location.hash = hash;
}
