// One endpoint: its settings (PATCH), secret (reveal, rotate), replay, recent deliveries.

import { get, post, patch } from '../api.js';
import { h, replace, when, enabledPill, pill, props, errorSlot, showError, dateToLocalInput, localInputToRfc3339, num } from '../dom.js';
import { pageHead, card, head } from '../layout.js';
import { href } from '../router.js';
import { adminOnly, canWrite, whyNot } from '../session.js';
import { field, toggle, placeError, clearErrors, busy } from '../widgets/forms.js';
import { confirmDialog } from '../widgets/dialog.js';
import { copyButton } from '../widgets/copy.js';
import { dataTable } from '../widgets/table.js';
import { toast } from '../widgets/toast.js';
import { deliveryColumns } from './deliveries.js';

export async function render(root, ctx) {
  const id = ctx.params.id;
  const error = errorSlot();
  root.append(pageHead({ title: `Webhook ${id}`, crumbs: [['Webhooks', href('webhooks')]] }), error);
  let endpoint;
  try {
    endpoint = (await get(`/api/webhooks/${encodeURIComponent(id)}`)).data;
  } catch (e) {
    showError(error, e);
    root.append(h('p', null, h('a', { href: href('webhooks') }, 'Back to the webhooks')));
    return;
  }

  const details = h('div');
  const detailsCard = card('Endpoint', details);
  function showDetails(e) {
    replace(details, props([
      ['URL', h('span', { class: 'row-actions' }, h('span', { class: 'url', id: 'endpoint-url' }, e.webhook), copyButton(e.webhook, { what: 'the endpoint URL' }))],
      ['Status', h('span', { id: 'endpoint-status', class: 'tags' }, enabledPill(e.enabled), e.disabledReason ? h('span', null, e.disabledReason) : null)],
      ['Kind', e.kind === 'settings' ? pill('settings URL', 'info') : 'registry'],
      ['Event types', h('span', { id: 'endpoint-event-types', class: 'tags' },
        e.eventTypes === null || e.eventTypes === undefined ? h('span', null, 'All event types')
          : e.eventTypes.map((t) => pill(t, 'info')))],
      ['Description', e.description ? h('span', { id: 'endpoint-description' }, e.description) : null],
      ['Timeout', h('span', { id: 'endpoint-timeout' }, e.timeout)],
      ['Max in flight', h('span', { id: 'endpoint-max-in-flight' }, num(e.maxInFlight))],
      ['Rate limit', h('span', { id: 'endpoint-rate-limit' }, e.rateLimit === null || e.rateLimit === undefined ? 'no limit' : `${e.rateLimit} / s`)],
      ['Created', when(e.created_at)],
      ['Updated', when(e.updatedAt)],
    ]));
  }
  showDetails(endpoint);

  // ---------- edit ----------
  const enabled = toggle({ label: 'Enabled', name: 'enabled', checked: endpoint.enabled });
  const allTypes = h('input', { type: 'checkbox', id: 'all-event-types', checked: endpoint.eventTypes === null });
  const types = field({ label: 'Event types', name: 'eventTypes', type: 'textarea',
    value: (endpoint.eventTypes || []).join('\n'),
    hint: 'One per line (or comma-separated), e.g. appointment_booked. Case-sensitive.' });
  const description = field({ label: 'Description', name: 'description', type: 'textarea', value: endpoint.description || '', hint: 'Up to 1000 characters; empty for none.' });
  const timeout = field({ label: 'Timeout', name: 'timeout', value: endpoint.timeout || '', placeholder: '5s', hint: 'Per attempt, e.g. 10s; at most 30s. Empty: the server default.' });
  const maxInFlight = field({ label: 'Max in flight', name: 'maxInFlight', type: 'number', value: endpoint.maxInFlight ?? '', attrs: { min: 1, max: 1024, step: 1 }, hint: '1 to 1024; empty: the default.' });
  const rateLimit = field({ label: 'Rate limit (deliveries / s)', name: 'rateLimit', type: 'number', value: endpoint.rateLimit ?? '', attrs: { min: 0, step: 'any' }, hint: 'Empty: no limit.' });
  const fields = { enabled, eventTypes: types, description, timeout, maxInFlight, rateLimit };
  const general = errorSlot();
  const saved = h('p', { class: 'success hidden', role: 'status' });
  const save = adminOnly(h('button', { type: 'submit', class: 'btn primary', id: 'save-endpoint' }, 'Save changes'));
  const isSettings = endpoint.kind === 'settings';
  const syncTypes = () => { types.input.disabled = allTypes.checked || isSettings || !canWrite(); };
  allTypes.addEventListener('change', syncTypes);
  if (isSettings) allTypes.disabled = true;
  const fs = h('fieldset', { disabled: !canWrite() },
    h('legend', null, canWrite() ? 'Change this endpoint' : 'Settings (read only)'),
    enabled.el,
    h('div', { class: 'field' }, h('label', { class: 'check', for: 'all-event-types' }, allTypes, 'Receive every event type'),
      isSettings ? h('span', { class: 'hint' }, 'The settings URL always receives every event type.') : null),
    types.el, description.el,
    h('div', { class: 'fields-inline' }, timeout.el, maxInFlight.el, rateLimit.el));
  const form = h('form', { novalidate: true, id: 'endpoint-form' }, fs, general, saved, save);
  syncTypes();

  function changes(e) {
    const out = {};
    if (enabled.input.checked !== e.enabled) out.enabled = enabled.input.checked;
    if (!isSettings) {
      const list = allTypes.checked ? null
        : types.input.value.split(/[\n,]/).map((t) => t.trim()).filter(Boolean);
      if (JSON.stringify(list) !== JSON.stringify(e.eventTypes ?? null)) out.eventTypes = list;
    }
    const d = description.input.value.trim() || null;
    if (d !== (e.description ?? null)) out.description = d;
    const t = timeout.input.value.trim() || null;
    if (t !== e.timeout) out.timeout = t;
    const m = maxInFlight.input.value.trim();
    if ((m === '' ? null : Number(m)) !== e.maxInFlight) out.maxInFlight = m === '' ? null : Number(m);
    const r = rateLimit.input.value.trim();
    if ((r === '' ? null : Number(r)) !== (e.rateLimit ?? null)) out.rateLimit = r === '' ? null : Number(r);
    return out;
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(fields, general);
    saved.classList.add('hidden');
    const body = changes(endpoint);
    if (!Object.keys(body).length) {
      saved.textContent = 'Nothing changed.';
      saved.classList.remove('hidden');
      return;
    }
    await busy(save, async () => {
      try {
        endpoint = (await patch(`/api/webhooks/${encodeURIComponent(id)}`, body)).data;
        showDetails(endpoint);
        saved.textContent = `Saved: ${Object.keys(body).join(', ')}.`;
        saved.classList.remove('hidden');
        toast('Endpoint saved');
      } catch (e) {
        placeError(e, fields, general);
      }
    });
  });

  // ---------- secret ----------
  const secretOut = h('div', { class: 'secret', id: 'secret-out' });
  const secretError = errorSlot();
  const reveal = adminOnly(h('button', { type: 'button', class: 'btn', id: 'reveal-secret' }, 'Reveal secret'));
  const rotate = adminOnly(h('button', { type: 'button', class: 'btn danger', id: 'rotate-secret' }, 'Rotate secret'));
  function showSecret(key, note) {
    replace(secretOut, h('code', { id: 'secret-value' }, key), copyButton(key, { what: 'the signing secret' }),
      h('button', { type: 'button', class: 'btn small', onclick: () => replace(secretOut) }, 'Hide'),
      note ? h('span', { class: 'muted' }, note) : null);
  }
  reveal.addEventListener('click', () => busy(reveal, async () => {
    showError(secretError, null);
    try {
      const { data } = await get(`/api/webhooks/${encodeURIComponent(id)}/secret`);
      showSecret(data.key);
    } catch (e) { showError(secretError, e); }
  }));
  rotate.addEventListener('click', async () => {
    showError(secretError, null);
    const key = await confirmDialog({
      title: 'Rotate the signing secret?',
      message: 'A new secret is made. The current one keeps signing beside it for the grace period (24 h by default), then only the new one does.',
      confirmLabel: 'Rotate secret',
      action: async () => (await post(`/api/webhooks/${encodeURIComponent(id)}/secret/rotate`, {})).data.key,
    });
    if (key) {
      showSecret(key, 'New secret: the previous one still signs during the grace period.');
      toast('Secret rotated');
    }
  });

  // ---------- replay ----------
  const since = field({ label: 'Failed since', name: 'since', type: 'datetime-local', value: dateToLocalInput(new Date(Date.now() - 24 * 3600_000)), hint: 'Your local time.' });
  const until = field({ label: 'Until (optional)', name: 'until', type: 'datetime-local', hint: 'Empty: now.' });
  const replayBtn = adminOnly(h('button', { type: 'submit', class: 'btn', id: 'replay' }, 'Replay failed deliveries'));
  const replayOut = h('p', { class: 'success hidden', role: 'status', id: 'replay-result' });
  const replayError = errorSlot();
  const replayForm = h('form', { novalidate: true, id: 'replay-form' },
    h('p', { class: 'muted' }, 'Every failed delivery of this endpoint created in the range gets one more attempt now.'),
    h('div', { class: 'fields-inline' }, since.el, until.el), replayError, replayOut, replayBtn);
  replayForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    clearErrors({ since, until }, replayError);
    replayOut.classList.add('hidden');
    const body = { since: localInputToRfc3339(since.input.value) };
    if (!body.since) { placeError({ message: 'since: pick a start time' }, { since }, replayError); return; }
    const u = localInputToRfc3339(until.input.value);
    if (u) body.until = u;
    busy(replayBtn, async () => {
      try {
        const { data } = await post(`/api/webhooks/${encodeURIComponent(id)}/replay`, body);
        replayOut.textContent = `Replayed ${num(data.replayed)} failed ${data.replayed === 1 ? 'delivery' : 'deliveries'}.`;
        replayOut.classList.remove('hidden');
        loadRecent();
      } catch (e) { placeError(e, { since, until }, replayError); }
    });
  });

  // ---------- recent deliveries ----------
  const recentError = errorSlot();
  const recentRefresh = head(h('button', { type: 'button', class: 'btn small' }, 'Refresh'));
  const recent = dataTable({ label: 'Recent deliveries', columns: deliveryColumns({ endpoint: false }),
    rowHref: (d) => href('deliveries', d.id),
    empty: 'No deliveries to this endpoint yet. Publish an event it is subscribed to (POST /api/v1/outbound-events).' });
  async function loadRecent() {
    try {
      const { data } = await get('/api/v1/deliveries', { endpointId: id, limit: 20 });
      recent.setRows(data.data || []);
      showError(recentError, null);
    } catch (e) { showError(recentError, e); }
  }
  recentRefresh.addEventListener('click', loadRecent);

  root.append(
    detailsCard,
    card('Settings', form),
    card('Signing secret',
      h('p', { class: 'muted' }, canWrite()
        ? 'Receivers verify each delivery\'s webhook-signature with this secret.'
        : `Secrets are shown to admin keys only. ${whyNot()}.`),
      h('div', { class: 'toolbar' }, reveal, rotate), secretError, secretOut),
    card('Replay', replayForm),
    card('Recent deliveries', recentRefresh, recentError, recent.el,
      h('p', null, h('a', { href: href('deliveries', { endpointId: id }) }, 'All deliveries of this endpoint')))
  );
  await loadRecent();
}
