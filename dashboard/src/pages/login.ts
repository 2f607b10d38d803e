// Sign in and register. Registration signs the new account in straight away; the first account
// of a deployment is its admin (the server decides). Errors show the contract's message, with
// field errors (422) next to their inputs.

import * as api from '../api';
import { clearFormError, h, showFormError } from '../ui';

export function mountLogin(mode: 'login' | 'register', params: URLSearchParams, go: (hash: string) => void): HTMLElement {
  const next = params.get('next') || '#/fleet';
  const registering = mode === 'register';
  const submit = h('button', { type: 'submit', class: 'primary' }, registering ? 'Create account' : 'Sign in');
  const form = h(
    'form',
    { class: 'card auth-form', novalidate: true, 'aria-label': registering ? 'Register' : 'Sign in' },
    h('h1', {}, registering ? 'Create an account' : 'Sign in to edgewatch'),
    h('div', { class: 'form-alert', role: 'alert', hidden: true }),
    registering &&
      h('label', {}, 'Name', h('input', { name: 'name', autocomplete: 'name', maxlength: 200 })),
    h('label', {}, 'Email', h('input', { name: 'email', type: 'email', autocomplete: 'email', required: true })),
    h(
      'label',
      {},
      'Password',
      h('input', {
        name: 'password',
        type: 'password',
        autocomplete: registering ? 'new-password' : 'current-password',
        required: true,
      }),
    ),
    submit,
    h(
      'p',
      { class: 'muted small' },
      registering
        ? h('a', { href: `#/login?next=${encodeURIComponent(next)}` }, 'I already have an account')
        : h('a', { href: `#/register?next=${encodeURIComponent(next)}` }, 'Create an account'),
    ),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFormError(form);
    const data = new FormData(form);
    const email = String(data.get('email') ?? '').trim();
    const password = String(data.get('password') ?? '');
    if (!email || !password) {
      showFormError(form, new Error('Enter your email and password.'));
      return;
    }
    submit.disabled = true;
    submit.textContent = registering ? 'Creating…' : 'Signing in…';
    try {
      if (registering) await api.register(email, password, String(data.get('name') ?? '').trim() || undefined);
      await api.login(email, password);
      go(next);
    } catch (err) {
      showFormError(form, err);
      submit.disabled = false;
      submit.textContent = registering ? 'Create account' : 'Sign in';
    }
  });
  return h('div', { class: 'auth-page' }, h('div', { class: 'brand big' }, 'edgewatch'), form);
}
