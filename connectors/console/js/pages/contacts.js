// Contacts: look a phone up; its contact record, conversations (as the API gives them)
// and its lead events with an event-type filter.

import { get } from '../api.js';
import { h, replace, when, pill, pretty, props, errorSlot, showError, emptyState } from '../dom.js';
import { pageHead, card } from '../layout.js';
import { href, go } from '../router.js';
import { field } from '../widgets/forms.js';
import { dataTable } from '../widgets/table.js';
import { pager } from '../widgets/pager.js';

export async function render(root, ctx) {
  const phone = ctx.params.phone || '';
  const input = field({ label: 'Phone (E.164)', name: 'phone', type: 'tel', value: phone, placeholder: '+15551234567',
    attrs: { autocomplete: 'off', inputmode: 'tel' }, hint: 'With the country code, e.g. +15551234567.' });
  const searchBtn = h('button', { type: 'submit', class: 'btn primary', id: 'contact-search' }, 'Search');
  const form = h('form', { novalidate: true, role: 'search', class: 'toolbar', id: 'contact-form' }, input.el, searchBtn);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const v = input.input.value.trim();
    if (!v) { showError(input.error, 'enter a phone number'); input.input.focus(); return; }
    go(href('contacts', v));
  });
  root.append(pageHead({ title: phone ? `Contact ${phone}` : 'Contacts' }), card(null, form));
  if (!phone) {
    root.append(emptyState('Search a phone number to see its contact record, its conversations and its lead events.'));
    input.input.focus();
    return;
  }

  // ---------- the contact ----------
  const contactBox = h('div', { id: 'contact' });
  const contactError = errorSlot();
  const convBox = h('div', { id: 'conversations' });
  root.append(card('Contact', contactError, contactBox), convBox);
  try {
    const { data: c } = await get(`/api/v1/contacts/${encodeURIComponent(phone)}`);
    replace(contactBox, props([
      ['Phone', h('span', { class: 'mono', id: 'contact-phone' }, c.phoneE164)],
      ['Full name', c.fullName ? h('span', { id: 'contact-name' }, c.fullName) : null],
      ['First name', c.firstName ?? null],
      ['Last name', c.lastName ?? null],
      ['Email', c.email ?? null],
      ['Metadata', c.metadata ? h('pre', null, pretty(c.metadata)) : null],
      ['Updated', when(c.updatedAt)],
    ]));
    renderConversations(convBox, c);
  } catch (e) {
    if (e.status === 404) {
      replace(contactBox, h('p', { class: 'notice', id: 'no-contact' }, `No contact record for ${phone}: no message, booking or contact update has named it yet. Its lead events, if any, are below.`));
    } else {
      showError(contactError, e);
    }
  }

  // ---------- lead events ----------
  const eventType = field({ label: 'Event type', name: 'eventType', value: ctx.query.get('eventType') || '', placeholder: 'mastery_purchase' });
  const filter = h('form', { novalidate: true, class: 'toolbar', id: 'event-filter-form' }, eventType.el,
    h('button', { type: 'submit', class: 'btn' }, 'Filter'));
  filter.addEventListener('submit', (e) => {
    e.preventDefault();
    go(href('contacts', phone, { eventType: eventType.input.value.trim() }));
  });
  const table = dataTable({
    label: 'Lead events',
    empty: ctx.query.get('eventType')
      ? `No ${ctx.query.get('eventType')} events for this phone. Clear the filter to see every event.`
      : 'No lead events for this phone. Events arrive with POST /api/v1/webhooks/lead-events.',
    columns: [
      { label: 'occurred', cell: (ev) => when(ev.occurredAt) },
      { label: 'event type', cell: (ev) => h('span', { class: 'event-type' }, ev.eventType) },
      { label: 'phone', cell: (ev) => h('span', { class: 'mono' }, ev.phoneE164) },
      { label: 'metadata', cell: (ev) => (ev.metadata ? h('pre', null, pretty(ev.metadata)) : null) },
      { label: 'ingested', cell: (ev) => when(ev.ingestedAt) },
    ],
  });
  const list = pager({
    noun: ['event', 'events'],
    fetchPage: async (cursor) => {
      const { data } = await get('/api/v1/lead-events', { phone, eventType: ctx.query.get('eventType') || '', limit: 50, cursor });
      return { rows: data.data || [], next: data.nextCursor };
    },
    onRows: (rows, first) => (first ? table.setRows(rows) : table.add(rows)),
  });
  root.append(card('Lead events', filter, table.el, list.el));
  await list.reload();
}

const pick = (o, ...keys) => {
  for (const k of keys) if (o && o[k] !== undefined) return o[k];
  return undefined;
};

/** Conversations, if the contact answer carries them: transcript, status tags, inactivity timer. */
function renderConversations(box, c) {
  const convs = pick(c, 'conversations');
  if (!Array.isArray(convs)) return;
  if (!convs.length) {
    box.append(card('Conversations', emptyState('No conversation with this contact yet.')));
    return;
  }
  for (const conv of convs) {
    const tags = pick(conv, 'status', 'statusTags', 'conversationStatus', 'tags') || [];
    const messages = pick(conv, 'messages', 'lastMessages', 'last_messages') || [];
    const timer = pick(conv, 'inactiveTimerDueAt', 'inactiveAt', 'timerDueAt', 'conversationInactiveAt', 'inactivityTimer', 'pendingTimer');
    const transcript = h('ol', { class: 'transcript', 'aria-label': 'Transcript' },
      messages.map((m) => {
        const who = pick(m, 'type', 'sender', 'from', 'role') || 'user';
        const text = pick(m, 'content', 'text', 'body') || '';
        const kind = pick(m, 'content_type', 'contentType');
        const at = pick(m, 'timestamp', 'at', 'sentAt');
        return h('li', { class: who === 'bot' ? 'bot' : 'user' },
          h('span', { class: 'who' }, who === 'bot' ? 'Bot' : 'User', at ? [' · ', when(at)] : null, kind && kind !== 'text' ? ` · ${kind}` : null),
          text || (kind ? `[${kind}]` : ''));
      }));
    let timerNode = null;
    if (timer && typeof timer === 'object') timerNode = h('span', null, timer.dueAt ? ['due ', when(timer.dueAt)] : pretty(timer));
    else if (timer) timerNode = h('span', null, 'conversation_inactive due ', when(timer));
    box.append(card(`Conversation${conv.botIntegrationId !== undefined ? ` on integration ${conv.botIntegrationId}` : ''}`,
      props([
        ['Status tags', Array.isArray(tags) && tags.length ? h('span', { class: 'tags' }, tags.map((t) => pill(t, 'info'))) : null],
        ['Last user message', when(pick(conv, 'lastUserMessageAt', 'lastUserMessageSentAt'))],
        ['Last bot message', when(pick(conv, 'lastBotMessageAt'))],
        ['Inactivity timer', timerNode || h('span', { class: 'muted' }, 'none pending')],
      ]),
      messages.length ? transcript : emptyState('No messages in this conversation.')));
  }
}
