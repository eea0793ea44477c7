// The console's entry: sign-in, the shell (navigation, who is signed in) and routing.

import { h, replace, clear, errorSlot, showError } from './dom.js';
import { parseHash, match } from './router.js';
import { setUnauthorizedHandler } from './api.js';
import { session, storedKey, signIn, signOut } from './session.js';
import { field, setFieldError } from './widgets/forms.js';
import { notice } from './layout.js';
import * as overview from './pages/overview.js';
import * as webhooks from './pages/webhooks.js';
import * as webhook from './pages/webhook.js';
import * as deliveries from './pages/deliveries.js';
import * as delivery from './pages/delivery.js';
import * as triggers from './pages/triggers.js';
import * as trigger from './pages/trigger.js';
import * as actionLog from './pages/action-log.js';
import * as campaigns from './pages/campaigns.js';
import * as campaign from './pages/campaign.js';
import * as contacts from './pages/contacts.js';
import * as settings from './pages/settings.js';

const NAV = [
  ['overview', 'Overview'],
  ['webhooks', 'Webhooks'],
  ['deliveries', 'Deliveries'],
  ['triggers', 'Triggers'],
  ['campaigns', 'Campaigns'],
  ['contacts', 'Contacts'],
  ['settings', 'Settings'],
];

const ROUTES = [
  { pattern: 'overview', nav: 'overview', page: overview },
  { pattern: 'webhooks', nav: 'webhooks', page: webhooks },
  { pattern: 'webhooks/:id', nav: 'webhooks', page: webhook },
  { pattern: 'deliveries', nav: 'deliveries', page: deliveries },
  { pattern: 'deliveries/:id', nav: 'deliveries', page: delivery },
  { pattern: 'triggers', nav: 'triggers', page: triggers },
  { pattern: 'triggers/:id', nav: 'triggers', page: trigger },
  { pattern: 'triggers/:id/actions/:aid', nav: 'triggers', page: actionLog },
  { pattern: 'campaigns', nav: 'campaigns', page: campaigns },
  { pattern: 'campaigns/:id', nav: 'campaigns', page: campaign },
  { pattern: 'contacts', nav: 'contacts', page: contacts },
  { pattern: 'contacts/:phone', nav: 'contacts', page: contacts },
  { pattern: 'settings', nav: 'settings', page: settings },
];

const root = document.getElementById('app');
let shell = null; // {main, links, identity}
let cleanups = [];
let firstRender = true;

function runCleanups() {
  for (const fn of cleanups) {
    try { fn(); } catch { /* a page's timer: nothing to report */ }
  }
  cleanups = [];
}

// ---------- sign in ----------

function renderSignIn(message) {
  runCleanups();
  shell = null;
  document.title = 'Sign in · leadstream';
  const key = field({ label: 'API key', name: 'key', type: 'password',
    attrs: { autocomplete: 'off', spellcheck: 'false', autocapitalize: 'off' },
    hint: 'An API key of your organization (leadstream api-key create). It is kept in this tab only.' });
  const general = errorSlot();
  const button = h('button', { type: 'submit', class: 'btn primary' }, 'Sign in');
  const form = h('form', { class: 'card', novalidate: true, 'aria-labelledby': 'signin-h' },
    h('div', { class: 'brand' }, h('img', { src: '/console/favicon.svg', alt: '' }), 'leadstream'),
    h('h1', { id: 'signin-h' }, 'Sign in to the console'),
    key.el, general, button);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    setFieldError(key, null);
    showError(general, null);
    const value = key.input.value.trim();
    if (!value) {
      setFieldError(key, 'enter an API key');
      key.input.focus();
      return;
    }
    button.disabled = true;
    try {
      await signIn(value);
      const { path } = parseHash();
      if (!path.length || path[0] === 'signin') location.hash = '#/overview';
      firstRender = true;
      route();
    } catch (err) {
      setFieldError(key, err.message || String(err));
      key.input.focus();
    } finally {
      button.disabled = false;
    }
  });
  replace(root, h('main', { class: 'signin', id: 'main' }, form));
  if (message) setFieldError(key, message);
  key.input.focus();
}

// ---------- shell ----------

function buildShell() {
  const s = session();
  const links = {};
  const list = h('ul', null, NAV.map(([k, label]) => {
    const a = h('a', { href: `#/${k}`, dataset: { nav: k } }, label);
    links[k] = a;
    return h('li', null, a);
  }));
  const out = h('button', { type: 'button', class: 'btn small', id: 'sign-out' }, 'Sign out');
  out.addEventListener('click', () => {
    signOut();
    history.replaceState(null, '', '#/overview');
    renderSignIn();
  });
  const identity = h('div', { class: 'identity', 'aria-label': 'Signed in as' },
    h('span', null, 'Organization ', h('strong', { id: 'org-id' }, String(s.organizationId))),
    h('span', null, 'Scope ', h('strong', { id: 'key-scope' }, s.scope)),
    s.prefix ? h('span', { class: 'mono', title: `API key ${s.keyId ?? ''}` }, `${s.prefix}…`) : null,
    out);
  const main = h('main', { class: 'content', id: 'main', tabindex: '-1' });
  const skip = h('a', { class: 'skip', href: '#main' }, 'Skip to content');
  skip.addEventListener('click', (e) => {
    e.preventDefault();
    const t = main.querySelector('h1') || main;
    t.focus();
  });
  const sidebar = h('header', { class: 'sidebar' },
    h('a', { class: 'brand', href: '#/overview' }, h('img', { src: '/console/favicon.svg', alt: '' }), 'leadstream'),
    h('nav', { class: 'nav', 'aria-label': 'Main' }, list),
    identity);
  replace(root, skip, h('div', { class: 'shell' }, sidebar, main));
  shell = { main, links };
}

function markNav(key) {
  for (const [k, a] of Object.entries(shell.links)) {
    if (k === key) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function ingestNotice() {
  return h('div', null,
    h('h1', { tabindex: '-1' }, 'This key can only ingest'),
    notice('This API key has the ingest scope: it can only POST lead events (/api/v1/webhooks/lead-events) and domain events (/api/v1/events). '
      + 'The server answers 403 to every read, so the console has nothing to show. Sign out and sign in with a read or admin key to use the console.', true));
}

// ---------- routing ----------

function route() {
  if (!session()) {
    renderSignIn();
    return;
  }
  const { path, query } = parseHash();
  if (!path.length) {
    history.replaceState(null, '', '#/overview');
    route();
    return;
  }
  if (!shell) buildShell();
  runCleanups();
  const found = match(ROUTES, path);
  markNav(found ? found.route.nav : null);
  const container = h('div', { class: 'page', dataset: { page: found ? found.route.pattern : 'not-found' } });
  clear(shell.main).append(container);
  if (session().scope === 'ingest') {
    container.append(ingestNotice());
    document.title = 'Ingest only · leadstream';
  } else if (!found) {
    document.title = 'Not found · leadstream';
    container.append(h('h1', { tabindex: '-1' }, 'No such page'),
      h('p', null, 'There is no console page at this address. ', h('a', { href: '#/overview' }, 'Go to the overview'), '.'));
  } else {
    if (session().scope === 'read') {
      container.append(h('p', { class: 'notice read-only', role: 'note' },
        'Read-only: this API key has the read scope. It can list and view everything but change nothing and see no secret; buttons that change something are disabled. Sign in with an admin key to make changes.'));
    }
    const ctx = {
      params: found.params,
      query,
      onCleanup: (fn) => cleanups.push(fn),
      isCurrent: () => container.isConnected,
    };
    try {
      const done = found.route.page.render(container, ctx);
      if (done && typeof done.catch === 'function') {
        done.catch((err) => {
          const slot = errorSlot();
          container.append(slot);
          showError(slot, err);
        });
      }
    } catch (err) {
      const slot = errorSlot();
      container.append(slot);
      showError(slot, err);
    }
  }
  if (!firstRender) {
    const t = container.querySelector('h1');
    if (t) t.focus({ preventScroll: false });
    window.scrollTo(0, 0);
  }
  firstRender = false;
}

window.addEventListener('hashchange', () => route());

// A key revoked while signed in: back to sign-in, saying why.
setUnauthorizedHandler((err) => {
  if (!session()) return;
  signOut();
  renderSignIn(`Signed out: the server no longer accepts this key (${err.message})`);
});

async function boot() {
  const key = storedKey();
  if (!key) {
    renderSignIn();
    return;
  }
  try {
    await signIn(key);
    route();
  } catch (err) {
    signOut();
    renderSignIn(err.message || String(err));
  }
}

boot();
