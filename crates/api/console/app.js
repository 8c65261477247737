// The console's shell: the hash router, the header (organization switcher, navigation, sign
// out), the status line where errors are shown in words, and the signed-in account.

import * as api from './api.js';
import { h, replace, select } from './dom.js';
import * as auth from './auth.js';
import * as documents from './documents.js';
import * as chat from './chat.js';
import * as org from './org.js';
import * as usage from './usage.js';
import * as admin from './admin.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const statusLine = document.getElementById('status');

/** What every view may read: the account (`me`: {user, memberships}) and the current organization. */
export const ctx = { me: null, cleanups: [] };

/** Shows `message` in the status line (`error`: announced at once, in the error style). */
export function notify(message, kind = 'info') {
  statusLine.className = `status ${kind}`;
  statusLine.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  replace(statusLine, message ? h('span', {}, message) : null,
    message ? h('button', { type: 'button', class: 'link', 'aria-label': 'Dismiss', onclick: () => notify('') }, '×') : null);
}

/** Shows an error in words: the API's problem+json `detail` (ApiError's message). */
export function fail(err) {
  notify(err && err.message ? err.message : String(err), 'error');
}

/** Runs `fn` when the current view is left (stops polling, aborts streams). */
export function onLeave(fn) { ctx.cleanups.push(fn); }

export function go(hash) {
  if (location.hash === hash) render(); else location.hash = hash;
}

/** The current organization's membership (or undefined). */
export function currentOrg() {
  const id = api.tenant();
  return ctx.me && ctx.me.memberships.find((m) => m.org_id === id);
}

/** True when the caller's role in the current organization is at least `role`. */
export function atLeast(role) {
  const order = ['viewer', 'member', 'admin', 'owner'];
  const m = currentOrg();
  return Boolean(m) && order.indexOf(m.role) >= order.indexOf(role);
}

/** Reads the account and its memberships; keeps the current organization valid. */
export async function loadMe() {
  ctx.me = await api.get('/auth/me', { tenant: null });
  const ids = ctx.me.memberships.map((m) => m.org_id);
  if (!ids.includes(api.tenant())) api.setTenant(ids[0] || null);
  return ctx.me;
}

const routes = [
  [/^\/signin$/, auth.signIn, true],
  [/^\/signup$/, auth.signUp, true],
  [/^\/code$/, auth.codeSignIn, true],
  [/^\/forgot$/, auth.forgot, true],
  [/^\/accept\/([^/]+)$/, auth.accept, false],
  [/^\/account$/, auth.account, false],
  [/^\/orgs$/, org.organizations, false],
  [/^\/documents$/, documents.list, false, true],
  [/^\/documents\/([^/]+)$/, documents.detail, false, true],
  [/^\/chat$/, chat.view, false, true],
  [/^\/chat\/([^/]+)$/, chat.view, false, true],
  [/^\/assistants$/, chat.assistants, false, true],
  [/^\/members$/, org.members, false, true],
  [/^\/keys$/, org.apiKeys, false, true],
  [/^\/usage$/, usage.view, false, true],
  [/^\/admin$/, admin.users, false],
  [/^\/admin\/orgs$/, admin.orgs, false],
  [/^\/admin\/audit$/, admin.audit, false],
];

function renderNav() {
  if (!ctx.me) { replace(nav); return; }
  const memberships = ctx.me.memberships;
  const links = [
    ['#/documents', 'Documents'], ['#/chat', 'Chat'], ['#/assistants', 'Assistants'],
    ['#/members', 'Members'], ['#/keys', 'API keys'], ['#/usage', 'Usage'], ['#/orgs', 'Organizations'],
  ];
  if (ctx.me.user.is_platform_admin) links.push(['#/admin', 'Admin']);
  links.push(['#/account', 'Account']);
  const here = `#${(location.hash.slice(1) || '/').split('/').slice(0, 2).join('/')}`;
  const switcher = memberships.length
    ? select('Organization', 'org', memberships.map((m) => [m.org_id, `${m.org_name} (${m.role})`]), api.tenant())
    : null;
  if (switcher) {
    switcher.querySelector('select').addEventListener('change', (e) => {
      api.setTenant(e.target.value);
      notify(`Switched to ${currentOrg().org_name}.`);
      render();
    });
  }
  replace(nav,
    switcher,
    h('ul', { class: 'links' }, links.map(([href, label]) => h('li', {},
      h('a', { href, 'aria-current': href === here ? 'page' : false }, label)))),
    h('button', { type: 'button', class: 'secondary', id: 'sign-out', onclick: async () => {
      await api.signOut();
      ctx.me = null;
      notify('You are signed out.');
      go('#/signin');
    } }, 'Sign out'));
}

let rendering = 0;

/** Renders the view the address names. */
export async function render() {
  const turn = ++rendering;
  ctx.cleanups.splice(0).forEach((fn) => { try { fn(); } catch { /* already gone */ } });
  const path = location.hash.slice(1) || '/';
  const found = routes.map(([re, view, open, needsOrg]) => ({ m: path.match(re), view, open, needsOrg }))
    .find((r) => r.m);
  if (!found || path === '/') { location.replace(api.signedIn() ? '#/documents' : '#/signin'); return; }
  if (!found.open && !api.signedIn()) {
    if (path.startsWith('/accept/')) sessionStorage.setItem('quire.after', `#${path}`);
    location.replace('#/signin');
    return;
  }
  try {
    if (!found.open && !ctx.me) await loadMe();
    if (found.open && api.signedIn() && !ctx.me) {
      await loadMe().catch(() => null);
      if (ctx.me) { location.replace('#/documents'); return; }
    }
    if (found.needsOrg && !api.tenant()) { location.replace('#/orgs'); return; }
    renderNav();
    const view = await found.view(...found.m.slice(1).map(decodeURIComponent));
    if (turn !== rendering) return;
    replace(main, view);
    const heading = main.querySelector('h1');
    if (heading) { heading.setAttribute('tabindex', '-1'); heading.focus({ preventScroll: true }); }
    document.title = heading ? `${heading.textContent} · Quire` : 'Quire';
  } catch (err) {
    if (err.status === 401) { ctx.me = null; location.replace('#/signin'); return; }
    fail(err);
    replace(main, h('h1', {}, 'Something went wrong'), h('p', {}, err.message || String(err)));
  }
}

/** After signing in: where the person was going (an invitation link), else the documents. */
export async function signedIn(tokens) {
  api.setTokens(tokens);
  await loadMe();
  const after = sessionStorage.getItem('quire.after');
  sessionStorage.removeItem('quire.after');
  notify('');
  go(after || (api.tenant() ? '#/documents' : '#/orgs'));
}

api.onSession((on) => { if (!on) { ctx.me = null; renderNav(); } });
window.addEventListener('hashchange', render);
render();
