// Contacts: look a phone up; its contact record, its WhatsApp conversations
// (GET /api/v1/contacts/{phone}/conversations) and its lead events with an event-type filter.

import { get } from '../api.js';
import { h, replace, when, pill, pretty, props, errorSlot, showError, emptyState } from '../dom.js';
import { pageHead, card } from '../layout.js';
import { href, go } from '../router.js';
import { field, busy } from '../widgets/forms.js';
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
  const conversations = conversationsCard(phone);
  root.append(card('Contact', contactError, contactBox), conversations.el);
  const convLoaded = conversations.load();
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
  await Promise.all([convLoaded, list.reload()]);
}

// ---------- conversations ----------

const FIRST = 50; // the API's default
const MOST = 500; // the most the API gives
const TAG_KIND = { appointment_booked: 'ok', replied: 'info', opted_out: 'bad' };
const TAG_TITLE = {
  appointment_booked: 'an appointment_booked event named this contact',
  replied: 'the contact has written',
  opted_out: 'the phone was added to the stop list',
};

const conversationsUrl = (phone) => `/api/v1/contacts/${encodeURIComponent(phone)}/conversations`;

/** Only http(s) media links become links: anything else (javascript:, data:) is shown as text. */
function safeLink(url) {
  try {
    const u = new URL(url);
    return u.protocol === 'https:' || u.protocol === 'http:' ? u.href : null;
  } catch {
    return null;
  }
}

/** The Conversations section: one card per conversation (one per integration). */
function conversationsCard(phone) {
  const error = errorSlot();
  error.id = 'conversations-error';
  const list = h('div', { class: 'conversations', 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading conversations…'));
  const el = h('section', { class: 'card', id: 'conversations', 'aria-labelledby': 'conversations-h' },
    h('div', { class: 'card-head' }, h('h2', { id: 'conversations-h' }, 'Conversations')),
    error, list);

  async function load() {
    try {
      const { data } = await get(conversationsUrl(phone), { messages: FIRST });
      const convs = Array.isArray(data && data.data) ? data.data : [];
      list.removeAttribute('aria-busy');
      if (!convs.length) {
        replace(list, h('p', { class: 'empty', id: 'no-conversations' }, 'No WhatsApp conversations with this contact.'));
        return;
      }
      replace(list, convs.map((c) => conversation(phone, c, FIRST)));
    } catch (e) {
      list.removeAttribute('aria-busy');
      replace(list);
      showError(error, e);
    }
  }
  return { el, load };
}

function statusTags(tags) {
  if (!Array.isArray(tags) || !tags.length) return h('span', { class: 'muted conv-tags' }, 'No status tags');
  return h('span', { class: 'tags conv-tags' }, tags.map((t) => {
    const p = pill(t, TAG_KIND[t] ?? '');
    p.dataset.tag = t;
    if (TAG_TITLE[t]) p.title = TAG_TITLE[t];
    return p;
  }));
}

function timer(inactiveAt) {
  if (!inactiveAt) return h('span', { class: 'muted conv-timer', dataset: { timer: 'none' } }, 'No inactivity timer pending');
  return h('span', { class: 'conv-timer', dataset: { timer: 'pending' } }, 'Inactive at ', when(inactiveAt));
}

function message(m, profileName) {
  const bot = m.sender === 'bot';
  const who = bot ? 'Bot' : (profileName || 'User');
  const kind = m.contentType && m.contentType !== 'text' ? m.contentType : null;
  let media = null;
  if (m.mediaUrl) {
    const link = safeLink(m.mediaUrl);
    media = link
      ? h('a', { class: 'media-link break', href: link, target: '_blank', rel: 'noopener noreferrer' }, `Open ${kind || 'media'}`)
      : h('span', { class: 'media-link muted break' }, `Media: ${m.mediaUrl}`);
  }
  return h('li', { class: ['msg', bot ? 'bot' : 'user'], dataset: { sender: bot ? 'bot' : 'user' } },
    h('span', { class: 'who' }, h('span', { class: 'sender' }, who), ' · ', when(m.at), kind ? ` · ${kind}` : null),
    m.content ? h('p', { class: 'text' }, m.content) : (kind ? h('p', { class: 'text muted' }, `[${kind}]`) : null),
    media);
}

/** One conversation; "Show more" asks the API for more of its messages (up to 500). */
function conversation(phone, c, asked) {
  const box = h('article', { class: 'conversation', dataset: { integration: c.botIntegrationId }, 'aria-label': `Conversation on integration ${c.botIntegrationId}` });
  fill(box, phone, c, asked);
  return box;
}

function fill(box, phone, c, asked, keepInView = 0) {
  const messages = Array.isArray(c.messages) ? c.messages : [];
  const transcript = messages.length
    ? h('ol', { class: 'transcript', 'aria-label': 'Transcript, oldest first', tabindex: '0' }, messages.map((m) => message(m, c.profileName)))
    : emptyState('No messages kept for this conversation.');
  const error = errorSlot();
  const more = messages.length >= asked && asked < MOST;
  const showMore = more ? h('button', { type: 'button', class: 'btn small show-more' }, 'Show more') : null;
  const count = messages.length >= MOST
    ? `The newest ${MOST} messages, the most the API gives.`
    : more ? `The newest ${messages.length} messages.` : (messages.length === 1 ? 'The only message.' : `All ${messages.length} messages.`);
  replace(box,
    h('div', { class: 'conv-head' },
      h('h3', null, `Integration ${c.botIntegrationId}`),
      c.profileName ? h('span', { class: 'conv-profile' }, c.profileName) : h('span', { class: 'conv-profile muted' }, 'no profile name'),
      statusTags(c.tags)),
    props([
      ['Inactivity', timer(c.inactiveAt)],
      ['Last user message', when(c.lastUserMessageAt)],
      ['Last bot message', when(c.lastBotMessageAt)],
    ]),
    transcript,
    h('div', { class: 'more' }, h('span', { class: 'muted conv-count' }, count), showMore),
    error);
  if (messages.length) {
    // Like a chat: the newest at the bottom in view; after "Show more", the first of the
    // messages shown before stays at the top, the older ones above it.
    const place = () => {
      const anchor = keepInView ? transcript.children[messages.length - keepInView] : null;
      transcript.scrollTop = anchor ? anchor.offsetTop : transcript.scrollHeight;
    };
    if (transcript.isConnected) place();
    else requestAnimationFrame(place);
  }
  if (showMore) {
    showMore.addEventListener('click', () => busy(showMore, async () => {
      showError(error, null);
      const want = Math.min(MOST, asked * 2);
      try {
        const { data } = await get(conversationsUrl(phone), { messages: want });
        const again = (data.data || []).find((x) => String(x.botIntegrationId) === String(c.botIntegrationId));
        if (!again) throw new Error('this conversation is no longer listed');
        fill(box, phone, again, want, messages.length);
        const next = box.querySelector('.show-more') || box.querySelector('.transcript');
        if (next) next.focus();
      } catch (e) {
        showError(error, e);
      }
    }));
  }
}
