// One campaign: state and transitions, audience upload (with progress), opt-outs, sends
// (create with an event filter and a local time in a zone), eligibility, progress.

import { get, post, del, upload, postNdjson } from '../api.js';
import { h, replace, when, pill, num, props, errorSlot, showError, localInputToRfc3339, id as newId } from '../dom.js';
import { pageHead, card } from '../layout.js';
import { href } from '../router.js';
import { adminOnly, canWrite } from '../session.js';
import { field, select, toggle, placeError, clearErrors, busy } from '../widgets/forms.js';
import { dataTable } from '../widgets/table.js';
import { pager } from '../widgets/pager.js';
import { stackedBar } from '../widgets/chart.js';
import { toast } from '../widgets/toast.js';
import { transitionButtons } from './campaigns.js';

/** Rejects listed at most (the API lists the first 50; a million-row file may have more). */
const MAX_REJECTS_SHOWN = 50;
const ELIGIBLE_SHOWN = 50;

export async function render(root, ctx) {
  const id = ctx.params.id;
  const base = `/api/v1/campaigns/${encodeURIComponent(id)}`;
  const error = errorSlot();
  const transitionsError = errorSlot();
  transitionsError.id = 'transition-error';
  const actionsBox = h('div', { class: 'toolbar', id: 'campaign-actions' });
  root.append(pageHead({ title: `Campaign ${id}`, crumbs: [['Campaigns', href('campaigns')]], actions: [actionsBox] }), transitionsError, error);

  let campaign;
  try {
    campaign = (await get(base)).data;
  } catch (e) {
    showError(error, e);
    return;
  }
  const title = root.querySelector('h1');
  const details = h('div');
  function showCampaign(c) {
    campaign = c;
    title.textContent = `Campaign: ${c.name}`;
    document.title = `Campaign ${c.name} · leadstream`;
    replace(details, props([
      ['State', h('span', { id: 'campaign-state' }, pill(c.state))],
      ['Audience', h('span', { id: 'audience-size' }, `${num(c.audienceSize)} leads`)],
      ['Delivers to', h('span', null, h('a', { href: href('webhooks', c.endpointId) }, `endpoint #${c.endpointId}`), c.deliveryUrl ? h('span', { class: 'url' }, ` ${c.deliveryUrl}`) : null)],
      ['Created', when(c.createdAt)],
      ['Updated', when(c.updatedAt)],
    ]));
    replace(actionsBox, transitionButtons(c, { errorEl: transitionsError, onChange: showCampaign, small: false }));
  }
  showCampaign(campaign);
  const reloadCampaign = async () => {
    try { showCampaign((await get(base)).data); } catch (e) { showError(error, e); }
  };

  root.append(card('Campaign', details));
  root.append(audienceCard(base, reloadCampaign));
  root.append(optOutCard());
  const sends = sendsCard(base, ctx, reloadCampaign);
  root.append(sends.el);
  await sends.ready;
}

// ---------- audience ----------

function audienceCard(base, reloadCampaign) {
  const file = field({ label: 'Audience CSV file', name: 'file', type: 'file', attrs: { accept: '.csv,text/csv' },
    hint: 'A header row with a phone column (phone or phoneE164), optionally external_id; every other column is kept as a variable. Uploading again merges.' });
  const go = adminOnly(h('button', { type: 'submit', class: 'btn primary', id: 'upload-audience' }, 'Upload audience'));
  const progress = h('progress', { max: 100, value: 0, id: 'upload-progress', 'aria-label': 'Upload progress' });
  const progressText = h('span', { class: 'muted', 'aria-live': 'polite' });
  const progressBox = h('div', { class: 'hidden' }, progress, progressText);
  const err = errorSlot();
  err.id = 'upload-error';
  const result = h('div', { id: 'upload-result' });
  const form = h('form', { novalidate: true, id: 'audience-form' },
    h('fieldset', { disabled: !canWrite() }, h('legend', null, 'Upload leads'), file.el), go, progressBox, err, result);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    showError(err, null);
    const f = file.input.files && file.input.files[0];
    if (!f) { showError(file.error, 'choose a CSV file first'); return; }
    showError(file.error, null);
    replace(result);
    progressBox.classList.remove('hidden');
    progress.value = 0;
    progress.max = f.size || 1;
    busy(go, async () => {
      try {
        const data = await upload(`${base}/audience`, f, {
          contentType: 'text/csv',
          onProgress: (loaded, total) => {
            progress.max = total || 1;
            progress.value = loaded;
            progressText.textContent = ` ${num(loaded)} of ${num(total)} bytes sent`;
          },
        });
        progressText.textContent = ` ${num(f.size)} bytes sent: done`;
        replace(result, uploadResult(data));
        toast(`Audience uploaded: ${num(data.accepted)} new leads`);
        reloadCampaign();
      } catch (e2) {
        showError(err, e2);
      }
    });
  });
  return card('Audience', form);
}

function uploadResult(d) {
  const rejects = Array.isArray(d.rejects) ? d.rejects.slice(0, MAX_REJECTS_SHOWN) : [];
  const table = dataTable({
    label: 'Rejected rows',
    empty: 'No row was rejected.',
    columns: [
      { label: 'row', num: true, cell: (r) => String(r.row) },
      { label: 'value', cell: (r) => h('span', { class: 'mono break' }, String(r.value ?? '')) },
      { label: 'reason', cell: (r) => r.reason },
    ],
    rows: rejects,
  });
  const more = d.rejected > rejects.length
    ? h('p', { class: 'muted', id: 'rejects-more' }, `Showing the first ${rejects.length} of ${num(d.rejected)} rejected rows.`)
    : null;
  return h('div', null,
    h('ul', { class: 'funnel', id: 'upload-counts' },
      h('li', null, h('span', { class: 'n', dataset: { count: 'received' } }, num(d.received)), h('span', { class: 'what' }, 'rows received')),
      h('li', { class: 'final' }, h('span', { class: 'n', dataset: { count: 'accepted' } }, num(d.accepted)), h('span', { class: 'what' }, 'new leads')),
      h('li', null, h('span', { class: 'n', dataset: { count: 'duplicates' } }, num(d.duplicates)), h('span', { class: 'what' }, 'duplicates')),
      h('li', { class: d.rejected ? 'drop' : null }, h('span', { class: 'n', dataset: { count: 'rejected' } }, num(d.rejected)), h('span', { class: 'what' }, 'rejected'))),
    d.rejected ? h('h3', null, 'Rejected rows') : null,
    d.rejected ? table.el : null,
    more);
}

// ---------- opt-outs ----------

function optOutCard() {
  const phones = field({ label: 'Phones', name: 'phones', type: 'textarea', placeholder: '+15551234567\n+447700900123',
    hint: 'One per line or comma-separated, 1 to 10,000. An opted-out lead is never eligible, in any campaign of the organization.' });
  const add = adminOnly(h('button', { type: 'submit', class: 'btn primary', id: 'opt-out-add' }, 'Opt out'));
  const remove = adminOnly(h('button', { type: 'button', class: 'btn', id: 'opt-out-remove' }, 'Remove opt-outs'));
  const err = errorSlot();
  err.id = 'opt-out-error';
  const out = h('p', { class: 'success hidden', role: 'status', id: 'opt-out-result' });
  const list = () => phones.input.value.split(/[\n,;]/).map((p) => p.trim()).filter(Boolean);
  async function change(method, button) {
    showError(err, null);
    out.classList.add('hidden');
    const p = list();
    if (!p.length) { showError(phones.error, 'enter at least one phone'); return; }
    showError(phones.error, null);
    await busy(button, async () => {
      try {
        const { data } = method === 'POST' ? await post('/api/v1/opt-outs', { phones: p }) : await del('/api/v1/opt-outs', { phones: p });
        out.textContent = method === 'POST'
          ? `${num(data.count)} newly opted out (of ${p.length}).`
          : `${num(data.count)} opt-outs removed (of ${p.length}).`;
        out.classList.remove('hidden');
      } catch (e) { placeError(e, { phones }, err); }
    });
  }
  const form = h('form', { novalidate: true, id: 'opt-out-form' }, h('fieldset', { disabled: !canWrite() }, h('legend', null, 'Opt phones out or back in'), phones.el),
    h('div', { class: 'toolbar' }, add, remove), err, out);
  form.addEventListener('submit', (e) => { e.preventDefault(); change('POST', add); });
  remove.addEventListener('click', () => change('DELETE', remove));

  const check = field({ label: 'Check a phone', name: 'phone', type: 'tel', placeholder: '+15551234567' });
  const checkBtn = h('button', { type: 'submit', class: 'btn', id: 'opt-out-check' }, 'Check');
  const checkOut = h('p', { id: 'opt-out-status', 'aria-live': 'polite' });
  const checkErr = errorSlot();
  const checkForm = h('form', { novalidate: true, class: 'toolbar', id: 'opt-out-check-form' }, check.el, checkBtn);
  checkForm.addEventListener('submit', (e) => {
    e.preventDefault();
    showError(checkErr, null);
    replace(checkOut);
    busy(checkBtn, async () => {
      try {
        const { data } = await get('/api/v1/opt-outs', { phone: check.input.value.trim() });
        replace(checkOut, h('strong', null, data.phoneE164), ' is ',
          data.optedOut ? pill('opted out', 'bad') : pill('not opted out', 'ok'),
          data.optedOut && data.since ? [' since ', when(data.since)] : null);
      } catch (er) { showError(checkErr, er); }
    });
  });
  return card('Opt-outs', form, checkForm, checkErr, checkOut);
}

// ---------- sends ----------

function zones() {
  let list = [];
  try { list = Intl.supportedValuesOf('timeZone'); } catch { list = []; }
  if (!list.includes('UTC')) list = ['UTC', ...list];
  return list;
}

function filterText(f) {
  if (!f) return null;
  const within = f.within && f.within.minutes ? ` within ${f.within.minutes} min` : '';
  return `${f.mode} ${f.eventType}${within}`;
}

function sendsCard(base, ctx, reloadCampaign) {
  const listError = errorSlot();
  const panel = h('div', { id: 'send-panel' });
  const table = dataTable({
    label: 'Sends',
    empty: 'No sends yet. Add one below: a local time in a time zone, a template and optionally an event filter.',
    columns: [
      { label: 'id', cell: (x) => String(x.id) },
      { label: 'when', cell: (x) => h('span', null, when(x.scheduledFor),
        x.localTime ? h('span', { class: 'muted sub' }, `${x.localTime.replace('T', ' ')} ${x.timeZone}`) : null) },
      { label: 'template', cell: (x) => `${x.templateName} (${x.language})` },
      { label: 'filters', cell: (x) => [filterText(x.eventFilter), x.useAudienceFilter ? 'audience filter' : null].filter(Boolean).join('; ') || null },
      { label: 'materialized', cell: (x) => when(x.materializedAt) },
      { label: 'progress', cell: (x) => stackedBar(parts(x), x.emitted) },
      { label: '', cell: (x) => h('span', { class: 'row-actions' },
        h('button', { type: 'button', class: 'btn small', dataset: { eligible: x.id }, onclick: () => openSend(x, 'eligible') }, 'Eligibility'),
        h('button', { type: 'button', class: 'btn small', dataset: { progress: x.id }, onclick: () => openSend(x, 'progress') }, 'Progress')) },
    ],
  });
  const list = pager({
    noun: ['send', 'sends'],
    fetchPage: async (next) => {
      const res = next ? await get(next) : await get(`${base}/sends`, { limit: 20 });
      return { rows: Array.isArray(res.data) ? res.data : [], next: res.next };
    },
    onRows: (rows, first) => (first ? table.setRows(rows) : table.add(rows)),
  });

  let panelTimer = null;
  ctx.onCleanup(() => clearInterval(panelTimer));

  function openSend(x, focus) {
    clearInterval(panelTimer);
    const sid = x.id;
    const progressBox = h('div', { id: 'send-progress' });
    const progressErr = errorSlot();
    const refresh = h('button', { type: 'button', class: 'btn small', id: 'refresh-progress' }, 'Refresh progress');
    const materialize = adminOnly(h('button', { type: 'button', class: 'btn small', id: 'materialize-send' }, 'Materialize now'));
    const matOut = h('p', { class: 'success hidden', role: 'status' });
    async function loadProgress() {
      try {
        const { data } = await get(`${base}/sends/${sid}`);
        showError(progressErr, null);
        replace(progressBox,
          h('p', null, data.materializedAt ? ['Materialized ', when(data.materializedAt), ': '] : 'Not materialized yet: ',
            h('strong', { dataset: { count: 'emitted' } }, num(data.emitted)), ' deliveries emitted.'),
          stackedBar(parts(data), data.emitted));
        return data;
      } catch (e) { showError(progressErr, e); return null; }
    }
    refresh.addEventListener('click', loadProgress);
    materialize.addEventListener('click', () => busy(materialize, async () => {
      showError(progressErr, null);
      try {
        const { data } = await post(`${base}/sends/${sid}/materialize`, {});
        matOut.textContent = `Materialized: ${num(data.emitted)} emitted now, ${num(data.alreadyEmitted)} already emitted.`;
        matOut.classList.remove('hidden');
        await loadProgress();
        reloadCampaign();
        list.reload();
      } catch (e) { showError(progressErr, e); }
    }));

    // Eligibility
    const at = field({ label: 'Evaluate at (optional)', name: 'at', type: 'datetime-local', hint: 'Empty: the send\'s instant.' });
    const run = h('button', { type: 'submit', class: 'btn primary', id: 'run-eligibility' }, 'Preview eligibility');
    const eligErr = errorSlot();
    eligErr.id = 'eligibility-error';
    const eligOut = h('div', { id: 'eligibility' });
    const eligForm = h('form', { novalidate: true, class: 'toolbar' }, at.el, run);
    eligForm.addEventListener('submit', (e) => {
      e.preventDefault();
      showError(eligErr, null);
      replace(eligOut, h('p', { class: 'muted' }, 'Evaluating…'));
      busy(run, async () => {
        try {
          const query = {};
          const a = localInputToRfc3339(at.input.value);
          if (a) query.at = a;
          const r = await postNdjson(`${base}/sends/${sid}/eligible`, { query, keep: ELIGIBLE_SHOWN });
          replace(eligOut, eligibility(r));
        } catch (er) {
          replace(eligOut);
          showError(eligErr, er);
        }
      });
    });

    replace(panel, card(`Send ${sid}`,
      props([
        ['Scheduled for', when(x.scheduledFor)],
        ['Local time', x.localTime ? `${x.localTime.replace('T', ' ')} in ${x.timeZone}` : null],
        ['Template', `${x.templateName} (${x.language})`],
        ['Event filter', filterText(x.eventFilter)],
        ['Audience filter', x.useAudienceFilter ? 'used (the latest include/exclude list received)' : 'not used'],
      ]),
      h('h3', null, 'Eligibility preview'),
      h('p', { class: 'muted' }, 'Which leads would get this send: opted-out leads are dropped first, then the audience filter, then the event filter. Nothing is emitted.'),
      eligForm, eligErr, eligOut,
      h('h3', null, 'Progress'),
      h('div', { class: 'toolbar' }, refresh, materialize), progressErr, matOut, progressBox));
    loadProgress();
    panelTimer = setInterval(async () => {
      if (document.hidden || !panel.isConnected) return;
      const d = await loadProgress();
      if (d && d.materializedAt && !d.pending) clearInterval(panelTimer);
    }, 5000);
    const target = focus === 'eligible' ? run : refresh;
    panel.scrollIntoView({ block: 'start' });
    target.focus({ preventScroll: true });
  }

  const form = newSendForm(base, (created) => {
    toast(`Send ${created.id} created for ${created.scheduledFor}`);
    list.reload();
    openSend(created, 'eligible');
  });

  const el = h('div', null,
    card('Sends', listError, table.el, list.el),
    panel,
    card('Add a send', form));
  return { el, ready: list.reload() };
}

function parts(x) {
  return [
    { label: 'delivered', value: x.delivered || 0, cls: 'ok' },
    { label: 'failed', value: x.failed || 0, cls: 'bad' },
    { label: 'pending', value: x.pending || 0, cls: 'wait' },
  ];
}

function eligibility(r) {
  const s = r.summary || {};
  const step = (cls, n, what, key) => h('li', { class: cls }, h('span', { class: 'n', dataset: { step: key } }, n), h('span', { class: 'what' }, what));
  const leads = dataTable({
    label: 'Eligible leads',
    empty: 'No lead is eligible.',
    columns: [
      { label: 'phone', cell: (l) => h('span', { class: 'mono' }, l.phoneE164) },
      { label: 'external id', cell: (l) => l.externalId ?? null },
    ],
    rows: r.rows,
  });
  return h('div', null,
    h('ol', { class: 'funnel', 'aria-label': 'Eligibility step by step' },
      step(null, num(s.audience), 'audience', 'audience'),
      step('drop', `− ${num(s.optedOut)}`, 'opted out', 'optedOut'),
      step('drop', `− ${num(s.audienceFilter)}`, 'audience filter', 'audienceFilter'),
      step('drop', `− ${num(s.eventFilter)}`, 'event filter', 'eventFilter'),
      step('final', num(s.eligible), 'eligible', 'eligible')),
    r.engine ? h('p', { class: 'muted' }, `Answered by the ${r.engine} engine.`) : null,
    leads.el,
    r.more ? h('p', { class: 'muted' }, `Showing the first ${r.rows.length} eligible leads; ${num(r.more)} more are not listed.`) : null);
}

function newSendForm(base, onCreated) {
  const modeLocal = h('input', { type: 'radio', name: 'when', id: 'when-local', value: 'local', checked: true });
  const modeInstant = h('input', { type: 'radio', name: 'when', id: 'when-instant', value: 'instant' });
  const localTime = field({ label: 'Local time', name: 'localTime', type: 'datetime-local', hint: 'Wall-clock time in the zone below (DST-aware).' });
  const zoneList = h('datalist', { id: newId('zones') }, zones().map((z) => h('option', { value: z })));
  const timeZone = field({ label: 'Time zone', name: 'timeZone', value: Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC',
    attrs: { list: zoneList.id, autocomplete: 'off', spellcheck: 'false' }, hint: 'IANA zone, e.g. America/New_York.' });
  const scheduledFor = field({ label: 'Instant', name: 'scheduledFor', type: 'datetime-local', hint: 'In your local time; sent as UTC.' });
  const templateName = field({ label: 'Template name', name: 'templateName', placeholder: 'launch_1' });
  const language = field({ label: 'Language', name: 'language', value: 'en_US' });
  const useFilter = toggle({ label: 'Event filter', name: 'useEventFilter', checked: false });
  const mode = select({ label: 'Mode', name: 'mode', options: [['exclude', 'Exclude leads that have the event'], ['include', 'Include only leads that have the event']] });
  const eventType = field({ label: 'Event type', name: 'eventType', placeholder: 'mastery_purchase', hint: 'As POSTed to lead events; case-sensitive.' });
  const within = field({ label: 'Within the last (minutes)', name: 'within', type: 'number', attrs: { min: 1, step: 1 }, hint: 'Optional: empty means any time before the send.' });
  const useAudience = toggle({ label: 'Use the audience filter', name: 'useAudienceFilter', checked: false });
  const filterBox = h('fieldset', { class: 'hidden', id: 'event-filter' }, h('legend', null, 'Event filter'),
    h('div', { class: 'fields-inline' }, mode.el, eventType.el, within.el));
  useFilter.input.addEventListener('change', () => filterBox.classList.toggle('hidden', !useFilter.input.checked));
  const localBox = h('div', { class: 'fields-inline' }, localTime.el, timeZone.el, zoneList);
  const instantBox = h('div', { class: 'fields-inline hidden' }, scheduledFor.el);
  const syncWhen = () => {
    localBox.classList.toggle('hidden', !modeLocal.checked);
    instantBox.classList.toggle('hidden', modeLocal.checked);
  };
  modeLocal.addEventListener('change', syncWhen);
  modeInstant.addEventListener('change', syncWhen);
  const err = errorSlot();
  err.id = 'send-error';
  const submit = adminOnly(h('button', { type: 'submit', class: 'btn primary', id: 'create-send' }, 'Add send'));
  const fields = { localTime, timeZone, scheduledFor, templateName, language, eventFilter: eventType, eventType, within, mode };
  const form = h('form', { novalidate: true, id: 'send-form' },
    h('fieldset', { disabled: !canWrite() },
      h('legend', null, 'When'),
      h('label', { class: 'radio', for: 'when-local' }, modeLocal, 'Local time in a time zone'),
      h('label', { class: 'radio', for: 'when-instant' }, modeInstant, 'An exact instant'),
      localBox, instantBox),
    h('fieldset', { disabled: !canWrite() }, h('legend', null, 'What'),
      h('div', { class: 'fields-inline' }, templateName.el, language.el)),
    h('fieldset', { disabled: !canWrite() }, h('legend', null, 'Who'), useFilter.el, filterBox, useAudience.el),
    err, submit);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    clearErrors(fields, err);
    const body = { templateName: templateName.input.value, language: language.input.value };
    if (modeLocal.checked) {
      body.localTime = localTime.input.value.slice(0, 16);
      body.timeZone = timeZone.input.value.trim();
    } else {
      body.scheduledFor = localInputToRfc3339(scheduledFor.input.value) || scheduledFor.input.value;
    }
    if (useFilter.input.checked) {
      body.eventFilter = { mode: mode.input.value, eventType: eventType.input.value.trim() };
      const w = within.input.value.trim();
      if (w) body.eventFilter.within = { minutes: Number(w) };
    }
    if (useAudience.input.checked) body.useAudienceFilter = true;
    busy(submit, async () => {
      try {
        const { data } = await post(`${base}/sends`, body);
        onCreated(data);
      } catch (er) { placeError(er, fields, err); }
    });
  });
  return form;
}
