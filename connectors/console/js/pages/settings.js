// Settings (seed 000): the organization's webhook URL and signing secret; WhatsApp integrations.

import { get, put, post, del } from '../api.js';
import { h, replace, when, errorSlot, showError, props, enabledPill, pill } from '../dom.js';
import { pageHead, card, notice } from '../layout.js';
import { href } from '../router.js';
import { adminOnly, canWrite, canSeeSecrets, whyNot } from '../session.js';
import { field, placeError, clearErrors, setFieldError, busy } from '../widgets/forms.js';
import { confirmDialog } from '../widgets/dialog.js';
import { copyButton } from '../widgets/copy.js';
import { dataTable } from '../widgets/table.js';
import { toast } from '../widgets/toast.js';
import { allEndpoints } from './webhooks.js';

export async function render(root) {
  root.append(pageHead({ title: 'Settings' }));
  const webhookCard = h('div');
  const whatsapp = whatsappCard();
  root.append(webhookCard, whatsapp.el);
  await Promise.all([
    canSeeSecrets() ? adminWebhook(webhookCard) : readWebhook(webhookCard),
    whatsapp.load(),
  ]);
}

// ---------- the settings webhook URL ----------

async function adminWebhook(box) {
  const url = field({ label: 'Webhook URL', name: 'webhookUrl', type: 'url', placeholder: 'https://api.example.com/webhook',
    hint: 'Receives every event (appointment_booked, conversation_inactive, message_delivery_failed, …) as a signed POST.' });
  const general = errorSlot();
  const saved = h('p', { class: 'success hidden', role: 'status', id: 'settings-saved' });
  const save = h('button', { type: 'submit', class: 'btn primary', id: 'save-settings' }, 'Save');
  const remove = h('button', { type: 'button', class: 'btn danger', id: 'remove-settings' }, 'Remove URL');
  const secretBox = h('div', { class: 'secret', id: 'settings-secret' });
  let secret = null;
  const reveal = h('button', { type: 'button', class: 'btn', id: 'reveal-settings-secret' }, 'Reveal');
  let revealed = false;

  function showSecret() {
    if (!secret) {
      replace(secretBox, h('span', { class: 'muted' }, 'No signing secret: set a webhook URL first.'));
      reveal.classList.add('hidden');
      return;
    }
    reveal.classList.remove('hidden');
    if (revealed) {
      replace(secretBox, h('code', { id: 'settings-secret-value' }, secret), copyButton(secret, { what: 'the signing secret' }));
      reveal.textContent = 'Hide';
    } else {
      replace(secretBox, h('code', { 'aria-label': 'hidden secret' }, 'whsec_••••••••••••••••'));
      reveal.textContent = 'Reveal';
    }
  }
  reveal.addEventListener('click', () => { revealed = !revealed; showSecret(); });

  function apply(data) {
    url.input.value = data.webhookUrl || '';
    secret = data.webhookSigningSecret || null;
    remove.disabled = !data.webhookUrl;
    showSecret();
  }

  const form = h('form', { novalidate: true, id: 'settings-form' }, url.el, general, saved, h('div', { class: 'toolbar' }, save, remove));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    clearErrors({ webhookUrl: url }, general);
    saved.classList.add('hidden');
    const value = url.input.value.trim();
    busy(save, async () => {
      try {
        const { data } = await put('/api/v1/organizations/current/settings', { webhookUrl: value || null });
        apply(data);
        saved.textContent = data.webhookUrl ? 'Saved: events now go to this URL.' : 'Removed: no settings URL.';
        saved.classList.remove('hidden');
        toast('Settings saved');
      } catch (err) {
        if (err.status === 400) setFieldError(url, err.message);
        else showError(general, err);
      }
    });
  });
  remove.addEventListener('click', async () => {
    const data = await confirmDialog({
      title: 'Remove the webhook URL?',
      message: 'Events stop going to the settings URL. Registry endpoints are not affected.',
      confirmLabel: 'Remove URL',
      action: async () => (await put('/api/v1/organizations/current/settings', { webhookUrl: null })).data,
    });
    if (data) {
      apply(data);
      saved.textContent = 'Removed: no settings URL.';
      saved.classList.remove('hidden');
    }
  });

  replace(box, card('Webhook URL', form, h('h3', null, 'Signing secret'),
    h('p', { class: 'muted' }, 'Receivers verify each delivery\'s webhook-signature (Standard Webhooks) with this secret.'),
    h('div', { class: 'toolbar' }, secretBox, reveal)));
  try {
    const { data } = await get('/api/v1/organizations/current/settings');
    apply(data);
  } catch (err) {
    showError(general, err);
  }
}

async function readWebhook(box) {
  const error = errorSlot();
  const body = h('div', { id: 'settings-endpoint' });
  replace(box, card('Webhook URL',
    notice(`Secrets and the settings API need an admin key. ${whyNot()}. Below is the settings endpoint as the webhook registry lists it.`, true),
    error, body));
  try {
    const settings = (await allEndpoints()).find((e) => e.kind === 'settings');
    if (!settings) {
      replace(body, h('p', { class: 'empty' }, 'No webhook URL is set. An admin can set one here.'));
      return;
    }
    replace(body, props([
      ['Webhook URL', h('span', { class: 'row-actions' }, h('span', { class: 'url', id: 'settings-url' }, settings.webhook), copyButton(settings.webhook, { what: 'the webhook URL' }))],
      ['Status', enabledPill(settings.enabled)],
      ['Endpoint', h('a', { href: href('webhooks', settings.id) }, `#${settings.id}`)],
      ['Updated', when(settings.updatedAt)],
      ['Signing secret', h('span', { class: 'muted' }, 'needs an admin key')],
    ]));
  } catch (err) {
    showError(error, err);
  }
}

// ---------- WhatsApp integrations ----------

/** A flag the API gives (hasAppSecret, hasVerifyToken) as a pill with words, not color alone. */
function flag(present, what) {
  const p = present ? pill('set', 'ok') : pill('not set', '');
  p.dataset.flag = what;
  p.dataset.present = present ? 'true' : 'false';
  p.title = present ? `This integration has ${what === 'appSecret' ? 'an app secret' : 'a verify token'}` : `No ${what === 'appSecret' ? 'app secret' : 'verify token'}`;
  return p;
}

/** The org's integrations (GET /api/v1/integrations/whatsapp, newest first), register, delete. */
function whatsappCard() {
  const callback = (path) => `${location.origin}${path}`;

  const botIntegrationId = field({ label: 'Bot integration id', name: 'botIntegrationId', type: 'number', attrs: { min: 1, step: 1 }, required: true });
  const botId = field({ label: 'Bot id (optional)', name: 'botId', type: 'number', attrs: { min: 1, step: 1 } });
  const appSecret = field({ label: 'App secret', name: 'appSecret', type: 'password', attrs: { autocomplete: 'off' },
    hint: 'Your Meta app\'s secret: X-Hub-Signature-256 of each webhook is checked with it.' });
  const verifyToken = field({ label: 'Verify token', name: 'verifyToken', attrs: { autocomplete: 'off' },
    hint: 'Any string; paste the same one into Meta\'s "Verify token" field.' });
  const fields = { botIntegrationId, botId, appSecret, verifyToken };
  const err = errorSlot();
  err.id = 'whatsapp-error';
  const registerBtn = adminOnly(h('button', { type: 'submit', class: 'btn primary', id: 'register-whatsapp' }, 'Register integration'));
  const result = h('div', { id: 'whatsapp-result' });
  const form = h('form', { novalidate: true, id: 'whatsapp-form' },
    h('fieldset', { disabled: !canWrite() }, h('legend', null, 'Register a WhatsApp Cloud API integration'),
      h('div', { class: 'fields-inline' }, botIntegrationId.el, botId.el),
      h('div', { class: 'fields-inline' }, appSecret.el, verifyToken.el)),
    err, registerBtn, result);

  const table = dataTable({
    label: 'WhatsApp integrations',
    empty: 'No WhatsApp integrations yet. Register one above to get its callback URL.',
    columns: [
      { label: 'integration', cell: (i) => [
        h('span', { class: 'integration-id', dataset: { integration: i.botIntegrationId } }, String(i.botIntegrationId)),
        h('span', { class: 'sub muted integration-bot' }, i.botId === null || i.botId === undefined ? 'no bot id' : `bot ${i.botId}`)] },
      { label: 'callback URL', className: 'callback-cell', cell: (i) => h('span', { class: 'row-actions top' }, h('span', { class: 'url integration-callback' }, callback(i.webhookPath)), copyButton(callback(i.webhookPath), { what: `callback URL of integration ${i.botIntegrationId}` })) },
      { label: 'app secret', cell: (i) => flag(i.hasAppSecret, 'appSecret') },
      { label: 'verify token', cell: (i) => flag(i.hasVerifyToken, 'verifyToken') },
      { label: 'registered', className: 'wrap-time', cell: (i) => when(i.createdAt) },
      { label: 'actions', cell: (i) => deleteButton(i.botIntegrationId) },
    ],
  });
  table.el.id = 'whatsapp-integrations';
  const listError = errorSlot();
  listError.id = 'whatsapp-list-error';
  const count = h('span', { class: 'muted', id: 'whatsapp-count', 'aria-live': 'polite' }, 'Loading…');

  async function load() {
    try {
      const { data } = await get('/api/v1/integrations/whatsapp');
      const rows = Array.isArray(data && data.data) ? data.data : [];
      table.setRows(rows);
      count.textContent = `${rows.length} ${rows.length === 1 ? 'integration' : 'integrations'}`;
      showError(listError, null);
    } catch (e) {
      count.textContent = '';
      showError(listError, e);
    }
  }

  async function remove(biid) {
    showError(listError, null);
    const ok = await confirmDialog({
      title: `Delete WhatsApp integration ${biid}?`,
      message: 'Its webhook then answers 401 and its seen message ids are deleted; its contacts and conversations stay. This cannot be undone.',
      confirmLabel: 'Delete integration',
      action: async () => (await del(`/api/v1/integrations/whatsapp/${encodeURIComponent(biid)}`)).data,
    });
    if (ok) {
      replace(result);
      toast(`Integration ${biid} deleted`);
    }
    // Deleted, or found gone (a 404 in the dialog): the list says what is there now.
    await load();
  }

  function deleteButton(biid) {
    const b = adminOnly(h('button', { type: 'button', class: 'btn small danger', dataset: { deleteIntegration: biid }, 'aria-label': `Delete integration ${biid}` }, 'Delete'));
    b.addEventListener('click', () => remove(biid));
    return b;
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    clearErrors(fields, err);
    replace(result);
    const id = botIntegrationId.input.value.trim();
    if (!id) { setFieldError(botIntegrationId, 'botIntegrationId is required'); botIntegrationId.input.focus(); return; }
    const body = { botIntegrationId: Number(id) };
    if (botId.input.value.trim()) body.botId = Number(botId.input.value.trim());
    if (appSecret.input.value) body.appSecret = appSecret.input.value;
    if (verifyToken.input.value) body.verifyToken = verifyToken.input.value;
    busy(registerBtn, async () => {
      try {
        const { data } = await post('/api/v1/integrations/whatsapp', body);
        const cb = callback(data.webhookPath);
        replace(result, h('div', { class: 'success', role: 'status' },
          h('p', null, `Integration ${data.botIntegrationId} registered. Paste this callback URL into Meta (WhatsApp → Configuration → Webhook)${data.hasVerifyToken ? ' with your verify token' : ''}:`),
          h('div', { class: 'secret' }, h('code', { id: 'whatsapp-callback' }, cb), copyButton(cb, { what: 'the callback URL' })),
          !data.hasAppSecret ? h('p', null, 'Without an app secret, Meta\'s calls must carry an API key of this organization.') : null));
        appSecret.input.value = '';
        toast(`Integration ${data.botIntegrationId} registered`);
        await load();
      } catch (er) { placeError(er, fields, err); }
    });
  });

  const el = card('WhatsApp integrations', form,
    h('div', { class: 'card-subhead' }, h('h3', null, 'Registered integrations'), count),
    listError, table.el);
  return { el, load };
}
