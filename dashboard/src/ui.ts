// Small DOM helpers shared by the pages: an element builder (no framework: the pages are a few
// forms and tables, and a plain builder keeps the bundle small), the loading / empty / error
// states every view shows, a modal dialog, and formatting of times and numbers.

import { ApiError } from './api';

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

/** `h('button', {class: 'primary', onclick: fn}, 'Save')`. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value as EventListener);
    } else if (key === 'value' && 'value' in el) {
      (el as HTMLInputElement).value = String(value);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el: Node, children: (Child | Child[])[]): void {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(el: Element, ...children: (Child | Child[])[]): void {
  el.replaceChildren();
  append(el, children);
}

export function loading(what: string): HTMLElement {
  return h('div', { class: 'state loading', role: 'status' }, h('span', { class: 'spinner' }), `Loading ${what}…`);
}

export function empty(message: string, ...extra: Child[]): HTMLElement {
  return h('div', { class: 'state empty' }, h('p', {}, message), ...extra);
}

export function errorText(err: unknown): string {
  if (err instanceof ApiError) return err.describe();
  if (err instanceof Error) return err.message;
  return String(err);
}

/** An error box: the contract's message and fields, and a retry button when given. */
export function failure(err: unknown, retry?: () => void): HTMLElement {
  const code = err instanceof ApiError ? err.code : null;
  return h(
    'div',
    { class: 'state error', role: 'alert' },
    h('p', {}, errorText(err)),
    code && h('p', { class: 'muted small' }, `code: ${code}`),
    retry && h('button', { type: 'button', onclick: () => retry() }, 'Retry'),
  );
}

/** Writes field errors of a 422 next to the form's inputs; the rest goes to the form's alert. */
export function showFormError(form: HTMLFormElement, err: unknown): void {
  form.querySelectorAll('.field-error').forEach((el) => el.remove());
  const alert = form.querySelector<HTMLElement>('.form-alert');
  const fields = err instanceof ApiError ? err.fields : {};
  for (const [field, why] of Object.entries(fields)) {
    const input = form.querySelector(`[name="${CSS.escape(field)}"]`);
    input?.insertAdjacentElement('afterend', h('span', { class: 'field-error' }, why));
  }
  if (alert) {
    alert.textContent = errorText(err);
    alert.hidden = false;
  }
}

export function clearFormError(form: HTMLFormElement): void {
  form.querySelectorAll('.field-error').forEach((el) => el.remove());
  const alert = form.querySelector<HTMLElement>('.form-alert');
  if (alert) alert.hidden = true;
}

/** A modal `<dialog>`; resolves when it closes. The content gets a `close` callback. */
export function modal(title: string, build: (close: () => void) => Node): Promise<void> {
  return new Promise((resolve) => {
    const dialog = h('dialog', { class: 'modal' });
    const close = () => dialog.close();
    dialog.append(
      h('header', {}, h('h2', {}, title), h('button', { type: 'button', class: 'icon', 'aria-label': 'Close', onclick: close }, '×')),
      build(close),
    );
    dialog.addEventListener('close', () => {
      dialog.remove();
      resolve();
    });
    document.body.appendChild(dialog);
    dialog.showModal();
  });
}

/** Asks a yes/no question in a modal; true when confirmed. */
export function confirmAction(title: string, message: string, action: string): Promise<boolean> {
  let confirmed = false;
  return modal(title, (close) =>
    h(
      'div',
      {},
      h('p', {}, message),
      h(
        'div',
        { class: 'actions' },
        h('button', { type: 'button', onclick: close }, 'Cancel'),
        h('button', { type: 'button', class: 'danger', onclick: () => { confirmed = true; close(); } }, action),
      ),
    ),
  ).then(() => confirmed);
}

let toastTimer: number | undefined;
export function toast(message: string, kind: 'info' | 'error' = 'info'): void {
  let el = document.getElementById('toast');
  if (!el) {
    el = h('div', { id: 'toast', role: 'status', 'aria-live': 'polite' });
    document.body.appendChild(el);
  }
  el.textContent = message;
  el.className = `toast ${kind} visible`;
  window.clearTimeout(toastTimer);
  toastTimer = window.setTimeout(() => el!.classList.remove('visible'), 4000);
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

/** "3 min ago"-style text; the exact time goes in the title attribute. */
export function ago(iso: string | null): string {
  if (!iso) return 'never';
  const seconds = (new Date(iso).getTime() - Date.now()) / 1000;
  const abs = Math.abs(seconds);
  if (abs < 45) return 'just now';
  if (abs < 3600) return relative.format(Math.round(seconds / 60), 'minute');
  if (abs < 86400) return relative.format(Math.round(seconds / 3600), 'hour');
  return relative.format(Math.round(seconds / 86400), 'day');
}

export function timeText(iso: string | null): string {
  return iso ? new Date(iso).toLocaleString() : '';
}

/** Metric values: bytes as KiB/MiB/GiB, the rest with at most three significant decimals. */
export function formatValue(metric: string, value: number): string {
  if (metric.endsWith('_bytes')) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let v = Math.abs(value);
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    return `${(Math.sign(value) * v).toFixed(v < 10 && i > 0 ? 1 : 0)} ${units[i]}`;
  }
  if (Number.isInteger(value)) return value.toLocaleString();
  return Number(value.toPrecision(4)).toLocaleString();
}

export const STATUS_LABEL: Record<string, string> = {
  online: 'online',
  offline: 'offline',
  never_seen: 'never seen',
};

export function statusBadge(status: string): HTMLElement {
  return h('span', { class: `badge status-${status}`, 'data-status': status }, STATUS_LABEL[status] ?? status);
}
