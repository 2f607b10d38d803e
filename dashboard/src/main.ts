// The dashboard's entry: hash routing (`#/fleet`, `#/devices/<id>`, `#/login`, `#/register`),
// so any static file server can serve it with no fallback rule; the app shell (top bar, link
// state, sign-out); and the session guard that sends a signed-out user to sign in and back.

import './style.css';
import * as api from './api';
import * as live from './live';
import { failure, h, replace, toast } from './ui';
import { mountLogin } from './pages/login';
import { mountFleet } from './pages/fleet';

export type Cleanup = () => void;

const root = document.getElementById('app')!;
let cleanup: Cleanup | null = null;
/** Set while the user signs out, so the end of the session is not reported as an expiry. */
let signingOut = false;

interface Route {
  path: string[];
  params: URLSearchParams;
}

function currentRoute(): Route {
  const raw = window.location.hash.replace(/^#\/?/, '');
  const [path, query] = raw.split('?', 2);
  return { path: path.split('/').filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query ?? '') };
}

export function navigate(hash: string): void {
  if (window.location.hash === hash) render();
  else window.location.hash = hash;
}

function shell(content: HTMLElement): HTMLElement {
  const link = h('span', { class: 'link-state', title: 'Live updates' });
  const paint = (state: string, why?: string) => {
    link.dataset.state = state;
    link.textContent = state === 'live' ? 'live' : state === 'connecting' ? 'connecting…' : 'offline';
    link.title = why ? `Live updates: ${why}` : 'Live updates';
  };
  paint(live.linkState());
  const off = live.onLinkState(paint);
  const who = h('span', { class: 'who muted' });
  api.me().then(
    (me) => (who.textContent = me.role === 'admin' ? `${me.email} (admin)` : me.email),
    () => undefined,
  );
  const bar = h(
    'header',
    { class: 'topbar' },
    h('a', { href: '#/fleet', class: 'brand' }, 'edgewatch'),
    h('nav', {}, h('a', { href: '#/fleet' }, 'Fleet')),
    h('span', { class: 'spacer' }),
    link,
    who,
    h(
      'button',
      {
        type: 'button',
        class: 'link',
        id: 'sign-out',
        onclick: async () => {
          signingOut = true;
          try {
            await api.logout();
          } catch {
            // The local session is gone either way.
          }
          live.disconnect();
          signingOut = false;
          navigate('#/login');
        },
      },
      'Sign out',
    ),
  );
  content.classList.add('content');
  const page = h('div', { class: 'page' }, bar, content);
  const previous = cleanup;
  cleanup = () => {
    off();
    previous?.();
  };
  return page;
}

function render(): void {
  cleanup?.();
  cleanup = null;
  const route = currentRoute();
  const [first, second] = route.path;
  if (first === 'login' || first === 'register') {
    if (api.signedIn() && first === 'login') return navigate('#/fleet');
    replace(root, mountLogin(first, route.params, (next) => navigate(next)));
    return;
  }
  if (!api.signedIn()) {
    const back = window.location.hash && window.location.hash !== '#/' ? window.location.hash : '#/fleet';
    return navigate(`#/login?next=${encodeURIComponent(back)}`);
  }
  const content = h('main', {});
  if (first === 'devices' && second) {
    // The device page (and uPlot) load on first use: the fleet page starts without them.
    let stop: Cleanup | null = null;
    let left = false;
    replace(content, h('div', { class: 'state loading' }, 'Loading…'));
    import('./pages/device').then(
      ({ mountDevice }) => {
        if (!left) stop = mountDevice(content, second);
      },
      (err) => replace(content, failure(err, () => window.location.reload())),
    );
    cleanup = () => {
      left = true;
      stop?.();
    };
  } else if (!first || first === 'fleet') {
    cleanup = mountFleet(content, route.params, (params) => {
      // Keep filters in the address so reload and back keep them, without re-rendering.
      const query = params.toString();
      history.replaceState(null, '', `#/fleet${query ? `?${query}` : ''}`);
    });
  } else {
    replace(content, h('div', { class: 'state empty' }, h('p', {}, 'No such page.'), h('a', { href: '#/fleet' }, 'Go to the fleet')));
  }
  replace(root, shell(content));
}

api.onSessionChange((signedIn) => {
  if (!signedIn) {
    live.disconnect();
    if (!signingOut && !currentRoute().path[0]?.match(/^(login|register)$/)) {
      toast('Your session ended; please sign in again.', 'error');
      render();
    }
  }
});

api.startSession();
window.addEventListener('hashchange', render);
render();
