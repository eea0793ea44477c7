// The console's only way to the server: the public JSON API, same origin, Bearer key.

let apiKey = null;
let onUnauthorized = null;

export function setKey(key) {
  apiKey = key;
}

/** Called when the signed-in key answers 401 (revoked meanwhile): the app signs out. */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

/** An answer that was not 2xx: `status` and the server's `{"error": ...}` text. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

function withQuery(path, query) {
  if (!query) return path;
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === null || v === undefined || v === '') continue;
    q.set(k, String(v));
  }
  const text = q.toString();
  if (!text) return path;
  return path + (path.includes('?') ? '&' : '?') + text;
}

/** The URL of `rel="next"` in a Link header, or null. */
export function nextLink(header) {
  if (!header) return null;
  for (const part of header.split(',')) {
    const m = part.match(/<([^>]*)>\s*;(.*)/);
    if (m && /rel="?next"?/.test(m[2])) return m[1];
  }
  return null;
}

async function errorFrom(res) {
  let message = `${res.status} ${res.statusText || 'error'}`;
  try {
    const text = await res.text();
    if (text) {
      try {
        const body = JSON.parse(text);
        if (body && typeof body.error === 'string') message = body.error;
      } catch {
        message = `${message}: ${text.slice(0, 300)}`;
      }
    }
  } catch { /* keep the status line */ }
  return new ApiError(res.status, message);
}

/**
 * One API call. `json` is sent as the JSON body; `body` with `contentType` as is.
 * Answers {status, data, headers, next} (next: the Link rel=next path) or throws ApiError.
 */
export async function request(method, path, { query, json, body, contentType, key, signal } = {}) {
  const headers = { Accept: 'application/json' };
  const bearer = key ?? apiKey;
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  let payload = body;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(json);
  } else if (contentType) {
    headers['Content-Type'] = contentType;
  }
  let res;
  try {
    res = await fetch(withQuery(path, query), { method, headers, body: payload, signal, cache: 'no-store', credentials: 'omit' });
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, `could not reach the server (${e && e.message ? e.message : e})`);
  }
  if (!res.ok) {
    const err = await errorFrom(res);
    if (res.status === 401 && !key && apiKey && onUnauthorized) onUnauthorized(err);
    throw err;
  }
  let data = null;
  const text = await res.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = text; }
  }
  return { status: res.status, data, headers: res.headers, next: nextLink(res.headers.get('Link')) };
}

export const get = (path, query, opts = {}) => request('GET', path, { ...opts, query });
export const post = (path, json, opts = {}) => request('POST', path, { ...opts, json });
export const put = (path, json, opts = {}) => request('PUT', path, { ...opts, json });
export const patch = (path, json, opts = {}) => request('PATCH', path, { ...opts, json });
export const del = (path, json, opts = {}) => request('DELETE', path, { ...opts, json });

/**
 * POST an NDJSON-answering route and read it as a stream: only the first `keep`
 * records are kept (the rest counted), so a million-line answer never sits in memory.
 * Answers {rows, more, summary} where `summary` is the line holding a "summary" key.
 */
export async function postNdjson(path, { query, keep = 50 } = {}) {
  const headers = { Accept: 'application/x-ndjson' };
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  let res;
  try {
    res = await fetch(withQuery(path, query), { method: 'POST', headers, cache: 'no-store', credentials: 'omit' });
  } catch (e) {
    throw new ApiError(0, `could not reach the server (${e && e.message ? e.message : e})`);
  }
  if (!res.ok) throw await errorFrom(res);
  const rows = [];
  let more = 0;
  let summary = null;
  const take = (line) => {
    if (!line.trim()) return;
    const rec = JSON.parse(line);
    if (rec && typeof rec === 'object' && 'summary' in rec) summary = rec.summary;
    else if (rows.length < keep) rows.push(rec);
    else more += 1;
  };
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      take(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  }
  buf += decoder.decode();
  take(buf);
  return { rows, more, summary, engine: res.headers.get('X-Leadstream-Eligibility-Engine') };
}

/**
 * Upload a file with XMLHttpRequest so its progress can be shown.
 * `onProgress(loaded, total)`; answers the parsed JSON or throws ApiError.
 */
export function upload(path, file, { contentType, onProgress } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', path);
    if (apiKey) xhr.setRequestHeader('Authorization', `Bearer ${apiKey}`);
    xhr.setRequestHeader('Content-Type', contentType || file.type || 'application/octet-stream');
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.onprogress = (e) => {
      if (onProgress) onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
    };
    xhr.onerror = () => reject(new ApiError(0, 'the upload could not reach the server'));
    xhr.onabort = () => reject(new ApiError(0, 'the upload was cancelled'));
    xhr.onload = () => {
      let data = null;
      try { data = xhr.responseText ? JSON.parse(xhr.responseText) : null; } catch { data = xhr.responseText; }
      if (xhr.status >= 200 && xhr.status < 300) {
        if (onProgress) onProgress(file.size, file.size);
        resolve(data);
      } else {
        const msg = data && typeof data.error === 'string' ? data.error : `${xhr.status} ${xhr.statusText}`;
        reject(new ApiError(xhr.status, msg));
      }
    };
    xhr.send(file);
  });
}
