// The console's client of the public API (/api/v1), and where its tokens live.
//
// Tokens: the access token only in this module's memory (a script that reads storage never
// sees it); the refresh token in sessionStorage, so a reload of the same tab keeps the session
// while closing the tab ends it. The refresh token rotates at every refresh (the old one is
// spent; presenting it again revokes the whole session). docs/console.md explains the choice.

const REFRESH_KEY = 'quire.refresh';
const TENANT_KEY = 'quire.org';

let access = null;
let accessExpires = 0;
let refreshing = null;
let timer = null;
const listeners = new Set();

/** An answer that is not 2xx: its problem+json `detail` in words, and the rest. */
export class ApiError extends Error {
  constructor(status, problem) {
    const fields = (problem && problem.errors) || [];
    const detail = (problem && (problem.detail || problem.title)) || `the server answered ${status}`;
    const extra = fields.map((f) => `${f.field}: ${f.message}`).join('; ');
    super(extra ? `${detail} (${extra})` : detail);
    this.status = status;
    this.code = problem && problem.code;
    this.problem = problem;
  }
}

/** Called with `true`/`false` when the session starts or ends. */
export function onSession(fn) { listeners.add(fn); }

export function signedIn() { return Boolean(access || sessionStorage.getItem(REFRESH_KEY)); }

export function tenant() { return sessionStorage.getItem(TENANT_KEY); }
export function setTenant(id) {
  if (id) sessionStorage.setItem(TENANT_KEY, id); else sessionStorage.removeItem(TENANT_KEY);
}

/** Keeps `tokens` ({access_token, refresh_token, expires_in}) and plans the next refresh. */
export function setTokens(tokens) {
  access = tokens.access_token;
  accessExpires = Date.now() + tokens.expires_in * 1000;
  sessionStorage.setItem(REFRESH_KEY, tokens.refresh_token);
  clearTimeout(timer);
  // Refresh a little before the access token expires (at 80% of its life).
  timer = setTimeout(() => { refresh().catch(() => {}); }, Math.max(1000, tokens.expires_in * 800));
  listeners.forEach((fn) => fn(true));
}

function forget() {
  access = null;
  accessExpires = 0;
  clearTimeout(timer);
  sessionStorage.removeItem(REFRESH_KEY);
  listeners.forEach((fn) => fn(false));
}

/** Exchanges the refresh token for new tokens, once at a time. */
export function refresh() {
  if (refreshing) return refreshing;
  const token = sessionStorage.getItem(REFRESH_KEY);
  if (!token) return Promise.reject(new ApiError(401, { detail: 'You are signed out.' }));
  refreshing = fetch('/api/v1/auth/refresh', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ refresh_token: token }),
  }).then(async (res) => {
    if (!res.ok) {
      const problem = await res.json().catch(() => null);
      if (res.status === 401) forget();
      throw new ApiError(res.status, problem);
    }
    setTokens(await res.json());
  }).finally(() => { refreshing = null; });
  return refreshing;
}

/** A valid access token, refreshing first when there is none or it is about to expire. */
export async function accessToken() {
  if (!access || Date.now() > accessExpires - 5000) await refresh();
  return access;
}

/** Ends the session on the server and here. */
export async function signOut() {
  const token = sessionStorage.getItem(REFRESH_KEY);
  forget();
  setTenant(null);
  if (token) {
    await fetch('/api/v1/auth/logout', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ refresh_token: token }),
    }).catch(() => {});
  }
}

async function headers(opts) {
  const out = {};
  if (opts.auth !== false) out.Authorization = `Bearer ${await accessToken()}`;
  const t = opts.tenant === undefined ? tenant() : opts.tenant;
  if (t && opts.auth !== false) out['X-Tenant-ID'] = t;
  if (opts.body !== undefined) out['Content-Type'] = 'application/json';
  return out;
}

/** `method /api/v1{path}` with a JSON body: the JSON answer (null for 204), or an ApiError. */
export async function call(method, path, body, opts = {}) {
  const send = async () => fetch(`/api/v1${path}`, {
    method,
    headers: { ...(await headers({ ...opts, body })), ...(opts.headers || {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let res = await send();
  if (res.status === 401 && opts.auth !== false && sessionStorage.getItem(REFRESH_KEY)) {
    access = null;
    await refresh();
    res = await send();
  }
  if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => null));
  if (res.status === 204) return null;
  const type = res.headers.get('content-type') || '';
  return type.includes('json') ? res.json() : res.text();
}

export const get = (path, opts) => call('GET', path, undefined, opts);
export const post = (path, body, opts) => call('POST', path, body === undefined ? {} : body, opts);
export const patch = (path, body, opts) => call('PATCH', path, body, opts);
export const del = (path, opts) => call('DELETE', path, undefined, opts);

/** A path with a query string from `params` (empty values left out). */
export function withQuery(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

/**
 * Uploads `file` (multipart) with XMLHttpRequest, whose upload progress fetch cannot report:
 * `onProgress(fraction)`; resolves to the answer `{document, job_id}`.
 */
export async function upload(file, collectionId, onProgress) {
  const token = await accessToken();
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/api/v1/documents');
    xhr.setRequestHeader('Authorization', `Bearer ${token}`);
    xhr.setRequestHeader('X-Tenant-ID', tenant());
    xhr.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable) onProgress(e.loaded / e.total);
    });
    xhr.addEventListener('load', () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { body = null; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body));
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, { detail: 'The upload was interrupted (network error).' })));
    const form = new FormData();
    if (collectionId) form.append('collection_id', collectionId);
    form.append('file', file, file.name);
    xhr.send(form);
  });
}

/**
 * Reads a server-sent event stream from `method path` (fetch, so the Authorization header can
 * be sent, which EventSource cannot): `onEvent({event, data, id})` per event. `signal` aborts it.
 */
export async function stream(method, path, body, { onEvent, signal, lastEventId }) {
  const extra = { Accept: 'text/event-stream' };
  if (lastEventId) extra['Last-Event-ID'] = lastEventId;
  const send = async () => fetch(`/api/v1${path}`, {
    method,
    headers: { ...(await headers({ body })), ...extra },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  let res = await send();
  if (res.status === 401) { access = null; await refresh(); res = await send(); }
  if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => null));
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const frame = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const ev = { event: 'message', data: '', id: null };
      const data = [];
      for (const line of frame.split('\n')) {
        if (line.startsWith(':')) continue;
        const i = line.indexOf(':');
        const key = i < 0 ? line : line.slice(0, i);
        const val = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
        if (key === 'event') ev.event = val;
        else if (key === 'data') data.push(val);
        else if (key === 'id') ev.id = val;
      }
      if (!data.length) continue;
      try { ev.data = JSON.parse(data.join('\n')); } catch { ev.data = data.join('\n'); }
      onEvent(ev);
    }
  }
}
