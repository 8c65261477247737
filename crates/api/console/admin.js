// Platform administration: users (search, disable, platform-admin flag), organizations and
// their plans, the audit log with filters.

import * as api from './api.js';
import { h, field, values, when } from './dom.js';
import { ctx, fail, go, notify } from './app.js';
import { form } from './auth.js';

function tabs(here) {
  const links = [['#/admin', 'Users'], ['#/admin/orgs', 'Organizations'], ['#/admin/audit', 'Audit log']];
  return h('nav', { class: 'tabs', 'aria-label': 'Administration' }, links.map(([href, label]) =>
    h('a', { href, 'aria-current': href === here ? 'page' : false }, label)));
}

function denied() {
  return h('div', {}, h('h1', {}, 'Administration'), h('p', {}, 'Only platform administrators may see this.'));
}

export async function users() {
  if (!ctx.me.user.is_platform_admin) return denied();
  const q = sessionStorage.getItem('quire.admin.q') || '';
  const page = await api.get(api.withQuery('/admin/users', { q, limit: 100 }), { tenant: null });
  const search = form({ id: 'user-search', class: 'inline', role: 'search' }, [
    field('Search by email or name', { name: 'q', type: 'search', value: q }),
  ], 'Search', async (v) => { sessionStorage.setItem('quire.admin.q', v.q); go('#/admin'); });
  const toggle = (u, patch, label) => h('button', { type: 'button', class: 'secondary', 'aria-label': `${label}: ${u.email}`, onclick: async () => {
    try { await api.patch(`/admin/users/${u.id}`, patch, { tenant: null }); notify(`${label}: ${u.email}.`); go('#/admin'); } catch (err) { fail(err); }
  } }, label);
  return h('div', {}, h('h1', {}, 'Users'), tabs('#/admin'), search,
    h('div', { class: 'scroll' }, h('table', { id: 'admin-users' },
      h('thead', {}, h('tr', {}, ['Email', 'Name', 'Admin', 'State', 'Created', ''].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, page.items.map((u) => h('tr', {},
        h('td', {}, u.email), h('td', {}, u.name), h('td', {}, u.is_platform_admin ? 'yes' : 'no'),
        h('td', {}, u.disabled ? 'disabled' : 'active'), h('td', {}, when(u.created_at)),
        h('td', { class: 'actions' },
          u.id === ctx.me.user.id ? null : toggle(u, { disabled: !u.disabled }, u.disabled ? 'Enable' : 'Disable'),
          u.id === ctx.me.user.id ? null : toggle(u, { is_platform_admin: !u.is_platform_admin }, u.is_platform_admin ? 'Remove admin' : 'Make admin'))))))));
}

export async function orgs() {
  if (!ctx.me.user.is_platform_admin) return denied();
  const page = await api.get('/admin/orgs?limit=100', { tenant: null });
  return h('div', {}, h('h1', {}, 'Organizations and plans'), tabs('#/admin/orgs'),
    h('ul', { class: 'grid', id: 'admin-orgs' }, page.items.map((o) => h('li', { class: 'card' },
      h('h3', {}, o.name), h('p', { class: 'muted' }, `${o.slug} · created ${when(o.created_at)}`),
      o.billing ? h('p', {}, `${o.billing.used} tokens used`, o.billing.monthly_token_limit ? ` of ${o.billing.monthly_token_limit}` : ' (no limit)') : null,
      form({ class: 'inline' }, [
        field('Plan', { name: 'plan', value: o.plan, required: true }),
        field('Monthly token limit (empty: the plan\'s)', { name: 'limit', type: 'number', min: 0,
          value: o.billing && o.billing.limit_overridden ? String(o.billing.monthly_token_limit) : '' }),
      ], 'Save', async (v) => {
        const patch = { plan: v.plan, monthly_token_limit: v.limit === '' ? null : Number(v.limit) };
        await api.patch(`/admin/orgs/${o.id}`, patch, { tenant: null });
        notify(`Saved ${o.name}.`);
        go('#/admin/orgs');
      })))));
}

export async function audit() {
  if (!ctx.me.user.is_platform_admin) return denied();
  const saved = JSON.parse(sessionStorage.getItem('quire.admin.audit') || '{}');
  const page = await api.get(api.withQuery('/admin/audit-log', { ...saved, limit: 100 }), { tenant: null });
  const filters = h('form', { id: 'audit-filters', class: 'inline', onsubmit: (e) => {
    e.preventDefault();
    const v = values(e.target);
    const out = {};
    for (const k of ['action', 'actor']) if (v[k]) out[k] = v[k];
    if (v.from) out.from = new Date(v.from).toISOString();
    if (v.until) out.until = new Date(v.until).toISOString();
    sessionStorage.setItem('quire.admin.audit', JSON.stringify(out));
    go('#/admin/audit');
  } },
  field('Action', { name: 'action', value: saved.action || '', placeholder: 'auth.login.failed' }),
  field('Actor (user id)', { name: 'actor', value: saved.actor || '' }),
  field('From', { name: 'from', type: 'datetime-local' }),
  field('Until', { name: 'until', type: 'datetime-local' }),
  h('button', { type: 'submit' }, 'Filter'));
  return h('div', {}, h('h1', {}, 'Audit log'), tabs('#/admin/audit'), filters,
    h('div', { class: 'scroll' }, h('table', { id: 'audit' },
      h('thead', {}, h('tr', {}, ['When', 'Action', 'Actor', 'Target', 'Address'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, page.items.length ? page.items.map((e) => h('tr', { dataset: { action: e.action } },
        h('td', {}, when(e.at)), h('td', {}, e.action), h('td', {}, e.actor || ''), h('td', {}, e.target || ''), h('td', {}, e.ip)))
        : h('tr', {}, h('td', { colspan: 5 }, 'No events match.'))))));
}
