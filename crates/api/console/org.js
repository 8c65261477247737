// Organizations (create, switch), members and roles, invitations (invite, list, revoke, a
// link to accept), API keys (create: the secret shown once; list; revoke).

import * as api from './api.js';
import { h, field, select, when } from './dom.js';
import { atLeast, ctx, currentOrg, fail, go, loadMe, notify } from './app.js';
import { form } from './auth.js';

const ROLES = [['viewer', 'viewer'], ['member', 'member'], ['admin', 'admin'], ['owner', 'owner']];

export async function organizations() {
  const items = ctx.me.memberships;
  return h('div', {},
    h('h1', {}, 'Organizations'),
    h('ul', { class: 'grid', id: 'orgs' }, items.length ? items.map((m) => h('li', { class: 'card' },
      h('h3', {}, m.org_name),
      h('p', { class: 'muted' }, `${m.org_slug} · ${m.role}`),
      m.org_id === api.tenant() ? h('p', {}, h('strong', {}, 'Current'))
        : h('button', { type: 'button', class: 'secondary', 'aria-label': `Switch to ${m.org_name}`, onclick: () => {
          api.setTenant(m.org_id);
          notify(`Switched to ${m.org_name}.`);
          go('#/documents');
        } }, 'Switch'))) : h('li', {}, 'You are in no organization yet: create one.')),
    h('section', { class: 'card' }, h('h2', {}, 'New organization'),
      form({ id: 'org-form' }, [
        field('Name', { name: 'name', required: true, maxlength: 100 }),
        field('Slug (letters, digits, dashes)', { name: 'slug', required: true, pattern: '[a-z0-9][a-z0-9-]*', maxlength: 63 }),
      ], 'Create organization', async (v) => {
        const created = await api.post('/orgs', v, { tenant: null });
        await loadMe();
        api.setTenant(created.id);
        notify(`Created ${created.name}; it is now the current organization.`);
        go('#/documents');
      })));
}

export async function members() {
  const org = currentOrg();
  const base = `/orgs/${org.org_id}`;
  const admin = atLeast('admin');
  const page = await api.get(`${base}/members?limit=100`);
  const me = ctx.me.user.id;
  const rows = page.items.map((m) => h('tr', { dataset: { user: m.user_id } },
    h('td', {}, h('span', { class: 'member-name' }, m.name || m.user_id), m.user_id === me ? ' (you)' : '',
      m.email ? [h('br'), h('span', { class: 'member-email muted' }, m.email)] : null),
    h('td', {}, admin ? (() => {
      const s = select(`Role of ${m.email || m.user_id}`, 'role', ROLES, m.role);
      s.querySelector('label').className = 'visually-hidden';
      s.querySelector('select').addEventListener('change', async (e) => {
        try { await api.patch(`${base}/members/${m.user_id}`, { role: e.target.value }); notify('Role changed.'); } catch (err) { fail(err); go('#/members'); }
      });
      return s;
    })() : m.role),
    h('td', {}, when(m.joined_at)),
    h('td', {}, admin ? h('button', { type: 'button', class: 'danger', onclick: async () => {
      if (!window.confirm('Remove this member?')) return;
      try { await api.del(`${base}/members/${m.user_id}`); notify('Member removed.'); go('#/members'); } catch (err) { fail(err); }
    } }, m.user_id === me ? 'Leave' : 'Remove') : null)));

  let invitations = null;
  if (admin) {
    const pending = await api.get(`${base}/invitations?limit=100`);
    const created = h('div', { id: 'invitation-created', 'aria-live': 'polite' });
    invitations = h('section', { class: 'card' }, h('h2', {}, 'Invitations'),
      form({ id: 'invite-form', class: 'inline' }, [
        field('Email', { name: 'email', type: 'email', required: true }),
        select('Role', 'role', ROLES.slice(0, 3), 'member'),
      ], 'Invite', async (v, el) => {
        const res = await api.post(`${base}/invitations`, v);
        el.reset();
        const link = `${location.origin}/#/accept/${encodeURIComponent(res.token)}`;
        created.replaceChildren(
          h('p', {}, `Invited ${res.invitation.email}. The token went out by mail; you can also send this link (shown once):`),
          h('input', { type: 'text', readonly: true, id: 'invitation-link', value: link, 'aria-label': 'Invitation link', class: 'secret' }));
        notify(`Invited ${res.invitation.email}.`);
        const list = document.getElementById('invitations');
        list.append(invitationRow(res.invitation));
      }),
      created,
      h('table', {}, h('thead', {}, h('tr', {}, ['Email', 'Role', 'Expires', ''].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', { id: 'invitations' }, pending.items.map(invitationRow))));
  }

  function invitationRow(i) {
    return h('tr', { dataset: { id: i.id } },
      h('td', {}, i.email), h('td', {}, i.role), h('td', {}, when(i.expires_at)),
      h('td', {}, h('button', { type: 'button', class: 'danger', 'aria-label': `Revoke the invitation of ${i.email}`, onclick: async (e) => {
        try { await api.del(`${base}/invitations/${i.id}`); e.target.closest('tr').remove(); notify(`Revoked the invitation of ${i.email}.`); } catch (err) { fail(err); }
      } }, 'Revoke')));
  }

  return h('div', {},
    h('h1', {}, `Members of ${org.org_name}`),
    h('section', { class: 'card scroll' }, h('table', { id: 'members' },
      h('thead', {}, h('tr', {}, ['Member', 'Role', 'Joined', ''].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows))),
    invitations);
}

export async function apiKeys() {
  const org = currentOrg();
  const base = `/orgs/${org.org_id}/api-keys`;
  if (!atLeast('admin')) return h('div', {}, h('h1', {}, 'API keys'), h('p', {}, 'Only admins and owners manage API keys.'));
  const page = await api.get(`${base}?limit=100`);
  const secret = h('div', { id: 'key-created', 'aria-live': 'polite' });
  const row = (k) => h('tr', { dataset: { id: k.id } },
    h('td', {}, k.name), h('td', {}, `${k.prefix}…`), h('td', {}, k.role), h('td', {}, (k.scopes || []).join(', ')),
    h('td', {}, k.last_used_at ? when(k.last_used_at) : 'never'),
    h('td', {}, h('button', { type: 'button', class: 'danger', 'aria-label': `Revoke ${k.name}`, onclick: async (e) => {
      if (!window.confirm(`Revoke ${k.name}? Programs using it stop working.`)) return;
      try { await api.del(`${base}/${k.id}`); e.target.closest('tr').remove(); notify(`Revoked ${k.name}.`); } catch (err) { fail(err); }
    } }, 'Revoke')));
  const body = h('tbody', { id: 'keys' }, page.items.map(row));
  return h('div', {},
    h('h1', {}, 'API keys'),
    h('section', { class: 'card' }, h('h2', {}, 'New key'),
      form({ id: 'key-form', class: 'inline' }, [
        field('Name', { name: 'name', required: true, maxlength: 100 }),
        select('Role', 'role', ROLES.slice(0, 3), 'member'),
      ], 'Create key', async (v, el) => {
        const res = await api.post(base, v);
        el.reset();
        secret.replaceChildren(
          h('p', {}, h('strong', {}, 'Copy the secret now: it is shown only this once.')),
          h('input', { type: 'text', readonly: true, id: 'key-secret', value: res.secret, 'aria-label': 'API key secret', class: 'secret' }));
        body.prepend(row(res.api_key));
      }),
      secret),
    h('section', { class: 'card scroll' }, h('table', {},
      h('thead', {}, h('tr', {}, ['Name', 'Prefix', 'Role', 'Scopes', 'Last used', ''].map((t) => h('th', { scope: 'col' }, t)))),
      body)));
}
