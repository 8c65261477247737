// Signing up, in (password or emailed code) and out; forgotten passwords; accepting an
// invitation by its link; the account's password and email confirmation.

import * as api from './api.js';
import { h, field, values } from './dom.js';
import { ctx, fail, go, loadMe, notify, signedIn } from './app.js';

/** A form whose submit runs `fn(values)` with its button disabled meanwhile; errors in words. */
export function form(attrs, fields, label, fn) {
  const button = h('button', { type: 'submit' }, label);
  const el = h('form', { ...attrs, novalidate: false }, fields, button);
  el.addEventListener('submit', async (e) => {
    e.preventDefault();
    button.disabled = true;
    try { await fn(values(el), el); } catch (err) { fail(err); } finally { button.disabled = false; }
  });
  return el;
}

function card(title, ...body) {
  return h('section', { class: 'card narrow' }, h('h1', {}, title), body);
}

const email = (autocomplete = 'email') => field('Email', { name: 'email', type: 'email', required: true, autocomplete });

export function signIn() {
  return card('Sign in',
    form({ id: 'signin-form' }, [
      email('username'),
      field('Password', { name: 'password', type: 'password', required: true, autocomplete: 'current-password' }),
    ], 'Sign in', async (v) => {
      signedIn(await api.post('/auth/login', { email: v.email, password: v.password }, { auth: false }));
    }),
    h('p', { class: 'links' },
      h('a', { href: '#/code' }, 'Sign in with an emailed code'), ' · ',
      h('a', { href: '#/forgot' }, 'Forgot your password?'), ' · ',
      h('a', { href: '#/signup' }, 'Create an account')));
}

export function signUp() {
  return card('Create an account',
    form({ id: 'signup-form' }, [
      field('Name', { name: 'name', required: true, autocomplete: 'name' }),
      email(),
      field('Password', { name: 'password', type: 'password', required: true, autocomplete: 'new-password', minlength: 8 }),
    ], 'Create account', async (v) => {
      const res = await api.post('/auth/register', v, { auth: false });
      signedIn(res.tokens);
    }),
    h('p', {}, 'Already have an account? ', h('a', { href: '#/signin' }, 'Sign in')));
}

export function codeSignIn() {
  const step2 = h('div', { hidden: true });
  let address = '';
  const request = form({ id: 'code-request-form' }, [email()], 'Email me a code', async (v) => {
    await api.post('/auth/code/request', { email: v.email }, { auth: false });
    address = v.email;
    step2.hidden = false;
    notify(`If ${v.email} can sign in, a 6-digit code is on its way (valid 10 minutes).`);
    step2.querySelector('input').focus();
  });
  step2.append(form({ id: 'code-verify-form' }, [
    field('Code', { name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9]{6}', required: true }),
  ], 'Sign in', async (v) => {
    signedIn(await api.post('/auth/code/verify', { email: address, code: v.code.trim() }, { auth: false }));
  }));
  return card('Sign in with a code', request, step2,
    h('p', {}, h('a', { href: '#/signin' }, 'Sign in with a password instead')));
}

export function forgot() {
  const step2 = h('div', { hidden: true });
  const request = form({ id: 'forgot-form' }, [email()], 'Email me a reset token', async (v) => {
    await api.post('/auth/password/forgot', { email: v.email }, { auth: false });
    step2.hidden = false;
    notify('If the address has an account, a reset token is on its way (valid 30 minutes).');
  });
  step2.append(form({ id: 'reset-form' }, [
    field('Reset token (from the mail)', { name: 'token', required: true, autocomplete: 'off' }),
    field('New password', { name: 'new_password', type: 'password', required: true, autocomplete: 'new-password' }),
  ], 'Set the new password', async (v) => {
    await api.post('/auth/password/reset', { token: v.token.trim(), new_password: v.new_password }, { auth: false });
    notify('Your password is changed: sign in with it.');
    go('#/signin');
  }));
  return card('Forgotten password', request, step2,
    h('p', {}, h('a', { href: '#/signin' }, 'Back to sign in')));
}

/** The email confirmation an account needs before accepting invitations. */
function confirmEmail() {
  const user = ctx.me.user;
  if (user.email_verified_at) return h('p', {}, `Your email ${user.email} is confirmed.`);
  const verify = form({ id: 'confirm-form', hidden: true }, [
    field('Code from the mail', { name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code', required: true }),
  ], 'Confirm', async (v) => {
    await api.post('/auth/email/verify', { code: v.code.trim() }, { tenant: null });
    await loadMe();
    notify('Your email is confirmed.');
    go(location.hash);
  });
  return h('div', {},
    h('p', {}, `Your email ${user.email} is not confirmed yet.`),
    h('button', { type: 'button', class: 'secondary', id: 'confirm-request', onclick: async () => {
      try {
        await api.post('/auth/code/request', { email: user.email }, { auth: false });
        verify.hidden = false;
        notify(`A code is on its way to ${user.email}.`);
      } catch (err) { fail(err); }
    } }, 'Email me a confirmation code'),
    verify);
}

export function accept(token) {
  return card('Accept an invitation',
    h('p', {}, `Signed in as ${ctx.me.user.email}. The invitation must be for this address.`),
    confirmEmail(),
    h('button', { type: 'button', id: 'accept-button', onclick: async () => {
      try {
        const res = await api.post(`/invitations/${encodeURIComponent(token)}/accept`, {}, { tenant: null });
        await loadMe();
        const orgId = res && res.id;
        if (orgId) api.setTenant(orgId);
        notify('You joined the organization.');
        go('#/documents');
      } catch (err) { fail(err); }
    } }, 'Accept the invitation'));
}

export function account() {
  const user = ctx.me.user;
  return h('div', {},
    h('section', { class: 'card' }, h('h1', {}, 'Account'),
      h('dl', {}, h('dt', {}, 'Name'), h('dd', {}, user.name), h('dt', {}, 'Email'), h('dd', {}, user.email)),
      confirmEmail()),
    h('section', { class: 'card' }, h('h2', {}, 'Change password'),
      form({ id: 'password-form' }, [
        field('Current password', { name: 'current_password', type: 'password', required: true, autocomplete: 'current-password' }),
        field('New password', { name: 'new_password', type: 'password', required: true, autocomplete: 'new-password' }),
      ], 'Change password', async (v, el) => {
        await api.post('/auth/password/change', v, { tenant: null });
        el.reset();
        notify('Your password is changed; your other sessions are signed out.');
      })));
}
