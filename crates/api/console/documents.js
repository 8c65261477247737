// Collections and documents: upload several files (drag and drop or the file picker) with a
// progress bar each, the live status and progress of every document, its chunks with their
// pages, delete and re-index.

import * as api from './api.js';
import { h, field, replace, bytes, when } from './dom.js';
import { atLeast, fail, go, notify, onLeave } from './app.js';
import { form } from './auth.js';

const COLLECTION_KEY = 'quire.collection';

function statusBadge(doc) {
  return h('span', { class: `badge ${doc.status}` }, doc.status);
}

function progressOf(doc) {
  const pct = Math.round((doc.progress || 0) * 100);
  return h('progress', { max: 100, value: pct, 'aria-label': `${doc.name}: ${pct}%` }, `${pct}%`);
}

export async function list() {
  const collections = (await api.get('/collections?limit=100')).items;
  let current = sessionStorage.getItem(COLLECTION_KEY);
  if (!collections.some((c) => c.id === current)) current = collections[0] ? collections[0].id : '';
  const canWrite = atLeast('member');
  const canAdmin = atLeast('admin');

  const tableBody = h('tbody', { id: 'documents-body' });
  const uploads = h('ul', { class: 'uploads', id: 'uploads', 'aria-label': 'Uploads' });
  const stats = h('p', { class: 'muted', id: 'collection-stats' });
  let timer = null;

  async function refresh() {
    clearTimeout(timer);
    try {
      const page = await api.get(api.withQuery('/documents', { collection_id: current, limit: 100 }));
      replace(tableBody, page.items.length ? page.items.map(row)
        : h('tr', {}, h('td', { colspan: 6 }, 'No documents yet.')));
      if (current) {
        const s = await api.get(`/collections/${current}/stats`);
        replace(stats, `${s.documents} documents, ${s.chunks} chunks, ${s.tokens} tokens, ${bytes(s.bytes)}`);
      }
      // Each upload's line follows its document to the end of its indexing.
      for (const li of uploads.querySelectorAll('li[data-document]')) {
        const doc = page.items.find((d) => d.id === li.dataset.document);
        const state = li.querySelector('.state');
        if (doc && state) {
          state.textContent = doc.status === 'ready' ? 'ready' : doc.status === 'failed' ? `failed: ${doc.error || ''}` : `indexing (${Math.round(doc.progress * 100)}%)`;
          state.className = `state ${doc.status === 'failed' ? 'error-text' : 'ok'}`;
        }
      }
      if (page.items.some((d) => d.status === 'queued' || d.status === 'processing')) {
        timer = setTimeout(refresh, 700);
      }
    } catch (err) { fail(err); }
  }
  onLeave(() => clearTimeout(timer));

  function row(doc) {
    return h('tr', { dataset: { id: doc.id, status: doc.status } },
      h('td', {}, h('a', { href: `#/documents/${doc.id}`, class: 'doc-name' }, doc.name)),
      h('td', {}, statusBadge(doc), doc.error ? h('div', { class: 'error-text' }, doc.error) : null),
      h('td', {}, progressOf(doc)),
      h('td', {}, String(doc.chunks)),
      h('td', {}, doc.pages == null ? '' : String(doc.pages)),
      h('td', { class: 'actions' },
        canWrite ? h('button', { type: 'button', class: 'secondary', 'aria-label': `Re-index ${doc.name}`, onclick: async () => {
          try { await api.post(`/documents/${doc.id}/reindex`); notify(`Re-indexing ${doc.name}.`); refresh(); } catch (err) { fail(err); }
        } }, 'Re-index') : null,
        canWrite ? h('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${doc.name}`, onclick: async () => {
          if (!window.confirm(`Delete ${doc.name}? Its chunks go with it.`)) return;
          try { await api.del(`/documents/${doc.id}`); notify(`Deleted ${doc.name}.`); refresh(); } catch (err) { fail(err); }
        } }, 'Delete') : null));
  }

  function send(files) {
    for (const file of files) {
      const bar = h('progress', { max: 100, value: 0, 'aria-label': `Uploading ${file.name}` });
      const state = h('span', { class: 'state muted' }, 'uploading');
      uploads.append(h('li', { dataset: { name: file.name } }, h('span', {}, file.name), bar, state));
      api.upload(file, current, (f) => { bar.value = Math.round(f * 100); })
        .then((res) => {
          bar.value = 100;
          state.textContent = res.duplicate ? 'already uploaded' : 'uploaded: indexing';
          state.className = 'state ok';
          state.parentElement.dataset.document = res.document.id;
          refresh();
        })
        .catch((err) => {
          state.textContent = err.message;
          state.className = 'state error-text';
          fail(new Error(`${file.name}: ${err.message}`));
        });
    }
  }

  const input = h('input', { type: 'file', id: 'file-input', multiple: true, class: 'visually-hidden',
    onchange: (e) => { send([...e.target.files]); e.target.value = ''; } });
  const drop = h('div', { class: 'dropzone', id: 'dropzone' },
    h('p', {}, 'Drop files here, or '),
    h('label', { for: 'file-input', class: 'button' }, 'choose files'),
    input,
    h('p', { class: 'muted' }, 'PDF, DOCX, TXT, Markdown, HTML, CSV.'));
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    send([...e.dataTransfer.files]);
  });

  const picker = h('div', { class: 'field' },
    h('label', { for: 'collection-select' }, 'Collection'),
    h('select', { id: 'collection-select', onchange: (e) => {
      sessionStorage.setItem(COLLECTION_KEY, e.target.value);
      go('#/documents');
    } },
    h('option', { value: '', selected: !current }, '(no collection)'),
    collections.map((c) => h('option', { value: c.id, selected: c.id === current }, c.name))));

  const create = canAdmin ? form({ id: 'collection-form', class: 'inline' }, [
    field('New collection', { name: 'name', required: true, maxlength: 200 }),
  ], 'Create collection', async (v) => {
    const c = await api.post('/collections', { name: v.name });
    sessionStorage.setItem(COLLECTION_KEY, c.id);
    notify(`Created the collection ${c.name}.`);
    go('#/documents');
  }) : null;
  const currentCollection = collections.find((c) => c.id === current);
  const remove = canAdmin && currentCollection ? h('button', { type: 'button', class: 'danger', onclick: async () => {
    if (!window.confirm(`Delete the collection ${currentCollection.name}?`)) return;
    try {
      await api.del(`/collections/${current}`);
      sessionStorage.removeItem(COLLECTION_KEY);
      go('#/documents');
    } catch (err) { fail(err); }
  } }, 'Delete collection') : null;

  refresh();
  return h('div', {},
    h('h1', {}, 'Documents'),
    h('section', { class: 'card row' }, picker, create, remove),
    stats,
    canWrite ? h('section', { class: 'card' }, h('h2', {}, 'Upload'), drop, uploads) : null,
    h('section', { class: 'card' },
      h('h2', {}, 'Documents'),
      h('div', { class: 'scroll' }, h('table', { id: 'documents' },
        h('thead', {}, h('tr', {}, ['Name', 'Status', 'Progress', 'Chunks', 'Pages', ''].map((t) => h('th', { scope: 'col' }, t)))),
        tableBody))));
}

export async function detail(id) {
  const doc = await api.get(`/documents/${id}`);
  const chunks = h('ol', { class: 'chunks', id: 'chunks' });
  const more = h('button', { type: 'button', class: 'secondary', hidden: true }, 'Load more chunks');
  let cursor = null;
  async function load() {
    try {
      const page = await api.get(api.withQuery(`/documents/${id}/chunks`, { limit: 50, cursor }));
      for (const c of page.items) {
        chunks.append(h('li', { class: 'chunk', value: c.ordinal + 1 },
          h('div', { class: 'muted' }, `Chunk ${c.ordinal + 1}`, c.page ? ` · page ${c.page}` : '', ` · ${c.tokens} tokens`),
          h('p', { class: 'quote' }, c.text)));
      }
      cursor = page.next_cursor;
      more.hidden = !cursor;
    } catch (err) { fail(err); }
  }
  more.addEventListener('click', load);
  load();
  if (doc.status === 'queued' || doc.status === 'processing') {
    // Still indexing: show it again once it has settled.
    const timer = setInterval(async () => {
      try {
        const now = await api.get(`/documents/${id}`);
        if (now.status !== doc.status || now.status === 'ready' || now.status === 'failed') {
          clearInterval(timer);
          go(`#/documents/${id}`);
        }
      } catch (err) { clearInterval(timer); fail(err); }
    }, 1000);
    onLeave(() => clearInterval(timer));
  }
  return h('div', {},
    h('p', {}, h('a', { href: '#/documents' }, '← Documents')),
    h('h1', { class: 'doc-title' }, doc.name),
    h('dl', { class: 'facts' },
      h('dt', {}, 'Status'), h('dd', {}, statusBadge(doc)),
      h('dt', {}, 'Format'), h('dd', {}, doc.format),
      h('dt', {}, 'Size'), h('dd', {}, bytes(doc.bytes)),
      h('dt', {}, 'Pages'), h('dd', {}, doc.pages == null ? '—' : String(doc.pages)),
      h('dt', {}, 'Chunks'), h('dd', {}, String(doc.chunks)),
      h('dt', {}, 'Tokens'), h('dd', {}, String(doc.tokens)),
      h('dt', {}, 'Uploaded'), h('dd', {}, when(doc.created_at)),
      doc.error ? [h('dt', {}, 'Error'), h('dd', { class: 'error-text' }, doc.error)] : null),
    h('h2', {}, 'Chunks'), chunks, more);
}
