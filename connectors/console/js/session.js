// The signed-in key: kept in sessionStorage only (one tab), never in localStorage or cookies.

import { get, setKey } from './api.js';

const KEY_ITEM = 'leadstream.apiKey';

let current = null; // {key, organizationId, keyId, prefix, scope}

export function session() {
  return current;
}

export function storedKey() {
  try { return sessionStorage.getItem(KEY_ITEM); } catch { return null; }
}

/** Checks `key` with GET /api/v1/api-keys/current; throws the ApiError on 401 and the like. */
export async function signIn(key) {
  const { data } = await get('/api/v1/api-keys/current', null, { key });
  current = { key, ...data };
  setKey(key);
  try { sessionStorage.setItem(KEY_ITEM, key); } catch { /* private mode: this page only */ }
  return current;
}

export function signOut() {
  current = null;
  setKey(null);
  try { sessionStorage.removeItem(KEY_ITEM); } catch { /* nothing stored */ }
}

export const scope = () => (current ? current.scope : null);
/** Only an admin key may change anything. */
export const canWrite = () => scope() === 'admin';
/** Only an admin key may see secrets. */
export const canSeeSecrets = () => scope() === 'admin';

export function whyNot() {
  return `Needs an admin API key: this key's scope is ${scope()}, which cannot change anything or see secrets`;
}

/** Disables `button` (with a tooltip saying why) unless the key is an admin key. */
export function adminOnly(button) {
  if (!canWrite()) {
    button.disabled = true;
    button.title = whyNot();
    button.setAttribute('aria-disabled', 'true');
    button.dataset.needsAdmin = 'true';
  }
  return button;
}
