// Chat: the sessions, streamed answers (SSE read with fetch), the stop button, resuming an
// answer that was streaming when the page was reloaded, citations as chips that open the
// quoted passage, feedback; and the assistants.

import * as api from './api.js';
import { h, field, plain, replace, select } from './dom.js';
import { atLeast, fail, go, notify, onLeave } from './app.js';
import { form } from './auth.js';

// The answer being streamed in this tab: {session, message, last} (last = Last-Event-ID), so
// that a reload resumes it. It holds ids only, never text.
const STREAM_KEY = 'quire.answer';

function citationChips(citations, dialog) {
  if (!citations || !citations.length) return null;
  return h('div', { class: 'chips', role: 'list', 'aria-label': 'Sources' },
    citations.map((c, i) => h('button', {
      type: 'button', class: 'chip', role: 'listitem',
      onclick: () => openCitation(dialog, c),
    }, `[${i + 1}] ${c.document_name}${c.page ? `, p. ${c.page}` : ''}`)));
}

function openCitation(dialog, c) {
  replace(dialog,
    h('h2', { id: 'citation-title' }, c.document_name),
    h('p', { class: 'muted' }, c.page ? `Page ${c.page}` : 'No page number', ` · score ${Number(c.score).toFixed(2)}`),
    h('blockquote', { class: 'quote', id: 'citation-quote' }, plain(c.quote)),
    h('p', {}, h('a', { href: `#/documents/${c.document_id}` }, 'Open the document')),
    h('form', { method: 'dialog' }, h('button', { type: 'submit' }, 'Close')));
  dialog.showModal();
}

function feedback(message) {
  const buttons = [];
  const vote = (rating) => async () => {
    try {
      await api.post(`/chat/messages/${message.id}/feedback`, { rating });
      buttons.forEach((b) => b.setAttribute('aria-pressed', String(b.dataset.rating === rating)));
      notify('Thank you for the feedback.');
    } catch (err) { fail(err); }
  };
  buttons.push(h('button', { type: 'button', class: 'icon', dataset: { rating: 'up' }, 'aria-pressed': 'false', onclick: vote('up') }, '▲ Helpful'));
  buttons.push(h('button', { type: 'button', class: 'icon', dataset: { rating: 'down' }, 'aria-pressed': 'false', onclick: vote('down') }, '▼ Not helpful'));
  return h('div', { class: 'feedback' }, buttons);
}

/** One message's element; an assistant's has its text, sources and feedback parts. */
function bubble(message, dialog) {
  const text = h('div', { class: 'text' }, plain(message.content));
  const el = h('li', { class: `message ${message.role}`, dataset: { id: message.id || '', status: message.status || '' } },
    h('div', { class: 'who' }, message.role === 'user' ? 'You' : 'Quire'), text);
  if (message.role === 'assistant') {
    if (message.status === 'incomplete') el.append(h('div', { class: 'muted incomplete' }, `Incomplete${message.error ? `: ${message.error}` : ''}`));
    const chips = citationChips(message.citations, dialog);
    if (chips) el.append(chips);
    if (message.id && message.status !== 'streaming') el.append(feedback(message));
  }
  return el;
}

export async function view(sessionId) {
  const [sessions, collections, assistants] = await Promise.all([
    api.get('/chat/sessions?limit=100'),
    api.get('/collections?limit=100'),
    api.get('/assistants?limit=100'),
  ]);
  const dialog = h('dialog', { id: 'citation', 'aria-labelledby': 'citation-title' });
  const canWrite = atLeast('member');

  const newSession = canWrite ? form({ id: 'session-form' }, [
    field('Title', { name: 'title', required: true, maxlength: 200, value: 'New chat' }),
    h('div', { class: 'field' }, h('label', { for: 'session-collections' }, 'Collections'),
      h('select', { id: 'session-collections', name: 'collection_ids', multiple: true },
        collections.items.map((c, i) => h('option', { value: c.id, selected: i === 0 }, c.name)))),
    select('Assistant', 'assistant_id', [['', '(none)'], ...assistants.items.map((a) => [a.id, a.name])], ''),
  ], 'New chat', async (v) => {
    const body = { title: v.title, collection_ids: v.collection_ids };
    if (v.assistant_id) body.assistant_id = v.assistant_id;
    const s = await api.post('/chat/sessions', body);
    go(`#/chat/${s.id}`);
  }) : null;

  const side = h('aside', { class: 'sessions', 'aria-label': 'Chat sessions' },
    h('h2', {}, 'Sessions'),
    h('ul', { id: 'sessions' }, sessions.items.map((s) => h('li', {},
      h('a', { href: `#/chat/${s.id}`, 'aria-current': s.id === sessionId ? 'page' : false }, s.title)))),
    newSession);

  if (!sessionId) {
    return h('div', { class: 'chat' }, side,
      h('section', { class: 'conversation' }, h('h1', {}, 'Chat'),
        h('p', {}, sessions.items.length ? 'Pick a session, or start a new one.' : 'Start a chat about your documents.')), dialog);
  }

  const session = await api.get(`/chat/sessions/${sessionId}`);
  const history = await api.get(`/chat/sessions/${sessionId}/messages?limit=100`);
  const list = h('ol', { class: 'messages', id: 'messages', 'aria-live': 'polite' },
    history.items.map((m) => bubble(m, dialog)));

  let controller = null;
  const question = h('textarea', { id: 'question', name: 'content', rows: 3, required: true });
  const sendButton = h('button', { type: 'submit', id: 'send' }, 'Send');
  const stopButton = h('button', { type: 'button', id: 'stop', class: 'danger', hidden: true,
    onclick: () => { if (controller) controller.abort(); } }, 'Stop');
  onLeave(() => { if (controller) controller.abort(); });

  /** Streams one answer into `el` (its text node replaced as deltas arrive). */
  async function follow(method, path, body, el, lastEventId, replaceText) {
    controller = new AbortController();
    sendButton.disabled = true;
    stopButton.hidden = false;
    const text = el.querySelector('.text');
    el.dataset.status = 'streaming';
    let content = replaceText ? '' : text.textContent;
    let first = Boolean(replaceText);
    let citations = [];
    let ended = false;
    try {
      await api.stream(method, path, body, {
        signal: controller.signal,
        lastEventId,
        onEvent: (ev) => {
          if (ev.id) {
            const messageId = ev.id.split(':')[0];
            el.dataset.id = messageId;
            sessionStorage.setItem(STREAM_KEY, JSON.stringify({ session: sessionId, message: messageId, last: ev.id }));
          }
          if (ev.event === 'delta') {
            if (first) { content = ''; first = false; }
            content += ev.data.text;
            text.textContent = plain(content);
          } else if (ev.event === 'citations') {
            citations = ev.data.citations;
          } else if (ev.event === 'done') {
            ended = true;
            el.dataset.status = 'complete';
            const chips = citationChips(citations, dialog);
            if (chips) el.append(chips);
            el.append(feedback({ id: ev.data.message_id }));
          } else if (ev.event === 'error') {
            ended = true;
            el.dataset.status = 'incomplete';
            el.append(h('div', { class: 'muted incomplete' }, `Incomplete: ${ev.data.detail || ev.data.code}`));
            const chips = citationChips(citations, dialog);
            if (chips) el.append(chips);
          }
        },
      });
    } catch (err) {
      if (err.name === 'AbortError') {
        el.dataset.status = 'stopped';
        el.append(h('div', { class: 'muted incomplete' }, 'Stopped.'));
        notify('The answer was stopped.');
      } else {
        el.dataset.status = 'failed';
        fail(err);
      }
    } finally {
      if (ended || el.dataset.status === 'stopped' || el.dataset.status === 'failed') sessionStorage.removeItem(STREAM_KEY);
      controller = null;
      sendButton.disabled = false;
      stopButton.hidden = true;
    }
  }

  const composer = canWrite ? h('form', { id: 'composer', class: 'composer', onsubmit: async (e) => {
    e.preventDefault();
    const content = question.value.trim();
    if (!content) return;
    question.value = '';
    list.append(bubble({ role: 'user', content }, dialog));
    const answer = bubble({ role: 'assistant', content: '', status: 'streaming' }, dialog);
    list.append(answer);
    await follow('POST', `/chat/sessions/${sessionId}/messages`, { content, stream: true }, answer, null, false);
  } },
  h('label', { for: 'question' }, 'Your question'), question,
  h('div', { class: 'row' }, sendButton, stopButton)) : h('p', { class: 'muted' }, 'Viewers can read chats but not ask.');
  question.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) composer.requestSubmit();
  });

  // An answer that was streaming when this tab reloaded: replay it from its start and follow it.
  const pending = JSON.parse(sessionStorage.getItem(STREAM_KEY) || 'null');
  const streaming = history.items.filter((m) => m.role === 'assistant' && m.status === 'streaming').pop();
  if (streaming || (pending && pending.session === sessionId)) {
    const id = streaming ? streaming.id : pending.message;
    const el = [...list.children].find((c) => c.dataset.id === id);
    if (el) {
      el.querySelectorAll('.chips, .feedback, .incomplete').forEach((n) => n.remove());
      if (el.dataset.status === 'streaming' || (pending && pending.message === id && el.dataset.status === 'streaming')) {
        setTimeout(() => follow('GET', `/chat/sessions/${sessionId}/stream`, undefined, el, `${id}:d0`, true), 0);
      } else {
        sessionStorage.removeItem(STREAM_KEY);
        el.replaceWith(bubble(history.items.find((m) => m.id === id), dialog));
      }
    }
  }

  return h('div', { class: 'chat' }, side,
    h('section', { class: 'conversation' },
      h('h1', {}, session.title),
      list, composer), dialog);
}

export async function assistants() {
  const [page, collections] = await Promise.all([api.get('/assistants?limit=100'), api.get('/collections?limit=100')]);
  const rows = page.items.map((a) => h('li', { class: 'card' },
    h('h3', {}, a.name),
    h('p', { class: 'quote' }, a.instructions),
    h('p', { class: 'muted' }, `${a.collection_ids.length} collections`, a.model ? ` · ${a.model}` : ''),
    h('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${a.name}`, onclick: async () => {
      try { await api.del(`/assistants/${a.id}`); notify(`Deleted ${a.name}.`); go('#/assistants'); } catch (err) { fail(err); }
    } }, 'Delete')));
  return h('div', {},
    h('h1', {}, 'Assistants'),
    h('p', {}, 'Reusable presets: instructions and collections a chat session can start from.'),
    atLeast('member') ? h('section', { class: 'card' }, h('h2', {}, 'New assistant'),
      form({ id: 'assistant-form' }, [
        field('Name', { name: 'name', required: true, maxlength: 200 }),
        field('Instructions', { name: 'instructions', required: true, rows: 3 }, 'textarea'),
        h('div', { class: 'field' }, h('label', { for: 'assistant-collections' }, 'Collections'),
          h('select', { id: 'assistant-collections', name: 'collection_ids', multiple: true },
            collections.items.map((c) => h('option', { value: c.id }, c.name)))),
      ], 'Create assistant', async (v) => {
        await api.post('/assistants', { name: v.name, instructions: v.instructions, collection_ids: v.collection_ids });
        notify(`Created ${v.name}.`);
        go('#/assistants');
      })) : null,
    h('ul', { class: 'grid', id: 'assistants' }, rows.length ? rows : h('li', {}, 'No assistants yet.')));
}
