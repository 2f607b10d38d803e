// The fleet page: every device the user may see, with live status (Socket.IO `subscribe_fleet`),
// last seen, search and filters (server-side: `q`, `status`, `tag`, `kind`), and create / edit /
// delete. Pages of 500 are fetched one after the other and appended as they come, so the first
// rows show at once even for a large fleet. After a create, the one-time enrollment token is
// shown with the exact `edgewatch-agent enroll` line to paste on the device.

import * as api from '../api';
import type { Device, DeviceInput } from '../api';
import * as live from '../live';
import {
  ago,
  clearFormError,
  confirmAction,
  empty,
  errorText,
  failure,
  h,
  loading,
  modal,
  replace,
  showFormError,
  statusBadge,
  timeText,
  toast,
} from '../ui';

const PAGE = 500;
const FILTERS = ['q', 'status', 'tag', 'kind'] as const;

export function mountFleet(
  root: HTMLElement,
  initial: URLSearchParams,
  remember: (params: URLSearchParams) => void,
): () => void {
  const filters = new URLSearchParams();
  for (const key of FILTERS) if (initial.get(key)) filters.set(key, initial.get(key)!);

  // A grid of rows rather than a <table>: rows below the fold skip layout and paint
  // (`content-visibility: auto`), which keeps a 1,000-device fleet fast; ARIA roles keep it a
  // table for assistive technology.
  const rows = new Map<string, { row: HTMLElement; device: Device }>();
  const tbody = h('div', { role: 'rowgroup', class: 'fleet-rows' });
  const header = (text: string, cls?: string) => h('span', { role: 'columnheader', class: cls }, text);
  const table = h(
    'div',
    { class: 'fleet', role: 'table', 'aria-label': 'Devices' },
    h('div', { role: 'rowgroup' }, h('div', { role: 'row', class: 'fleet-row fleet-head' }, header('Name'), header('Status'), header('Last seen'), header('Kind'), header('Tags'), header('', 'actions-col'))),
    tbody,
  );
  // One listener for every row's buttons (a thousand rows, two thousand closures otherwise).
  tbody.addEventListener('click', (event) => {
    const button = (event.target as Element).closest<HTMLElement>('button[data-action]');
    const id = button?.closest<HTMLElement>('[data-id]')?.dataset.id;
    if (!button || !id) return;
    if (button.dataset.action === 'edit') void editDevice(id);
    else if (button.dataset.action === 'delete') void remove(id);
  });
  const body = h('div', { class: 'fleet-body' });
  const count = h('span', { class: 'muted', id: 'fleet-count' });
  let controller: AbortController | null = null;
  let disposed = false;

  const input = (name: string, label: string, placeholder: string) =>
    h('input', { name, 'aria-label': label, placeholder, value: filters.get(name) ?? '', type: 'search' });
  const search = input('q', 'Search', 'Search name or tag');
  const tag = input('tag', 'Tag', 'Tag');
  const kind = input('kind', 'Kind', 'Kind');
  const status = h(
    'select',
    { name: 'status', 'aria-label': 'Status' },
    h('option', { value: '' }, 'Any status'),
    h('option', { value: 'online' }, 'Online'),
    h('option', { value: 'offline' }, 'Offline'),
    h('option', { value: 'never_seen' }, 'Never seen'),
  );
  status.value = filters.get('status') ?? '';

  let debounce: number | undefined;
  const changed = () => {
    window.clearTimeout(debounce);
    debounce = window.setTimeout(() => {
      for (const [key, el] of [['q', search], ['tag', tag], ['kind', kind], ['status', status]] as const) {
        const value = el.value.trim();
        if (value) filters.set(key, value);
        else filters.delete(key);
      }
      remember(filters);
      void load();
    }, 250);
  };
  for (const el of [search, tag, kind]) el.addEventListener('input', changed);
  status.addEventListener('change', changed);

  const toolbar = h(
    'div',
    { class: 'toolbar' },
    h('h1', {}, 'Fleet'),
    count,
    h('span', { class: 'spacer' }),
    h('button', { type: 'button', class: 'primary', id: 'new-device', onclick: () => void editDevice(null) }, 'New device'),
  );
  const filterBar = h('div', { class: 'filters' }, search, status, tag, kind);
  replace(root, toolbar, filterBar, body);

  // Status pushes heard while a list request was in flight are newer than its answer: they are
  // applied to the rows it brings, or a device could show a stale status until the next push.
  const heard = new Map<string, { event: live.StatusEvent; at: number }>();
  let loadStarted = 0;

  function row(device: Device): HTMLElement {
    const recent = heard.get(device.id);
    if (recent && recent.at >= loadStarted) {
      device.status = recent.event.status;
      if (recent.event.status === 'online') device.last_seen_at = recent.event.ts;
    }
    const tr = h(
      'div',
      { role: 'row', class: 'fleet-row', 'data-id': device.id },
      h('span', { role: 'cell', 'data-label': 'Name' }, h('a', { href: `#/devices/${device.id}`, class: 'device-link' }, device.name)),
      h('span', { role: 'cell', 'data-label': 'Status', class: 'status-cell' }, statusBadge(device.status)),
      h('span', { role: 'cell', 'data-label': 'Last seen', class: 'seen-cell', title: timeText(device.last_seen_at) }, ago(device.last_seen_at)),
      h('span', { role: 'cell', 'data-label': 'Kind' }, device.kind ?? ''),
      h('span', { role: 'cell', 'data-label': 'Tags' }, device.tags.map((t) => h('span', { class: 'tag' }, t))),
      h(
        'span',
        { role: 'cell', class: 'actions-col' },
        h('button', { type: 'button', class: 'link', 'data-action': 'edit' }, 'Edit'),
        h('button', { type: 'button', class: 'link danger', 'data-action': 'delete' }, 'Delete'),
      ),
    );
    rows.set(device.id, { row: tr, device });
    return tr;
  }

  async function load(): Promise<void> {
    if (disposed) return;
    controller?.abort();
    const mine = new AbortController();
    controller = mine;
    rows.clear();
    loadStarted = Date.now();
    live.refreshFleet();
    replace(tbody);
    table.removeAttribute('data-complete');
    replace(body, loading('devices'));
    count.textContent = '';
    const fetchPage = (cursor: string | null) => {
      const request = api.listDevices({ ...Object.fromEntries(filters), limit: PAGE, cursor }, mine.signal);
      // A prefetch abandoned by a newer load must not surface as an unhandled rejection.
      request.catch(() => undefined);
      return request;
    };
    try {
      let next: Promise<api.Page<Device>> | null = fetchPage(null);
      while (next) {
        const page: api.Page<Device> = await next;
        if (mine.signal.aborted) return;
        // Ask for the next page before rendering this one: the request overlaps the rendering.
        next = page.next_cursor ? fetchPage(page.next_cursor) : null;
        const fragment = document.createDocumentFragment();
        for (const device of page.items) fragment.appendChild(row(device));
        tbody.appendChild(fragment);
        if (rows.size > 0 && !table.isConnected) replace(body, table);
        count.textContent = `${rows.size} device${rows.size === 1 ? '' : 's'}${page.next_cursor ? '…' : ''}`;
      }
    } catch (err) {
      if ((err as Error).name === 'AbortError' || mine.signal.aborted) return;
      replace(body, failure(err, () => void load()));
      return;
    }
    table.setAttribute('data-complete', String(rows.size));
    if (rows.size === 0) {
      replace(
        body,
        filters.size
          ? empty('No device matches these filters.', h('button', { type: 'button', onclick: clearFilters }, 'Clear filters'))
          : empty('No devices yet. Create one, then enroll it with the agent.', h('button', { type: 'button', class: 'primary', onclick: () => void editDevice(null) }, 'New device')),
      );
    }
  }

  function clearFilters(): void {
    search.value = tag.value = kind.value = status.value = '';
    changed();
  }

  async function remove(id: string): Promise<void> {
    const entry = rows.get(id);
    if (!entry) return;
    const ok = await confirmAction(
      'Delete device',
      `Delete “${entry.device.name}”? Its credentials stop working at once; its agent will be refused.`,
      'Delete',
    );
    if (!ok) return;
    try {
      await api.deleteDevice(id);
      entry.row.remove();
      rows.delete(id);
      count.textContent = `${rows.size} device${rows.size === 1 ? '' : 's'}`;
      toast(`Deleted ${entry.device.name}`);
      if (rows.size === 0) void load();
    } catch (err) {
      toast(`Could not delete: ${errorText(err)}`, 'error');
    }
  }

  async function editDevice(id: string | null): Promise<void> {
    const existing = id ? rows.get(id)?.device ?? null : null;
    let created: (Device & { enrollment_token: string }) | null = null;
    await modal(existing ? `Edit ${existing.name}` : 'New device', (close) => {
      const form = deviceForm(existing, async (input) => {
        if (existing) {
          const updated = await api.updateDevice(existing.id, input);
          rows.get(updated.id)?.row.replaceWith(row(updated));
          toast(`Saved ${updated.name}`);
        } else {
          created = await api.createDevice(input);
        }
        close();
      });
      return form;
    });
    if (created) {
      await showEnrollment(created);
      void load();
    }
  }

  const stopLive = live.watchFleet((event) => {
    heard.set(event.device_id, { event, at: Date.now() });
    const entry = rows.get(event.device_id);
    if (!entry) return;
    entry.device.status = event.status;
    if (event.status === 'online') entry.device.last_seen_at = event.ts;
    replace(entry.row.querySelector('.status-cell')!, statusBadge(event.status));
    const seen = entry.row.querySelector<HTMLElement>('.seen-cell')!;
    seen.textContent = ago(entry.device.last_seen_at);
    seen.title = timeText(entry.device.last_seen_at);
  });
  // Pushes sent while the link was down are gone: after a reconnect, fetch the list again.
  let previous = live.linkState();
  let wasLive = previous === 'live';
  const stopLink = live.onLinkState((state) => {
    if (state === 'live' && previous !== 'live' && wasLive) void load();
    if (state === 'live') wasLive = true;
    previous = state;
  });
  // "3 min ago" ages while the page is open.
  const ticker = window.setInterval(() => {
    for (const { row: tr, device } of rows.values()) {
      const seen = tr.querySelector<HTMLElement>('.seen-cell');
      if (seen) seen.textContent = ago(device.last_seen_at);
    }
  }, 30_000);

  void load();
  return () => {
    disposed = true;
    controller?.abort();
    stopLive();
    stopLink();
    window.clearInterval(ticker);
    window.clearTimeout(debounce);
  };
}

/** The create / edit form; `save` throws the API's error, which the form shows. */
export function deviceForm(existing: Device | null, save: (input: DeviceInput) => Promise<void>): HTMLFormElement {
  const submit = h('button', { type: 'submit', class: 'primary' }, existing ? 'Save' : 'Create');
  const form = h(
    'form',
    { class: 'device-form', novalidate: true },
    h('div', { class: 'form-alert', role: 'alert', hidden: true }),
    h('label', {}, 'Name', h('input', { name: 'name', required: true, value: existing?.name ?? '', maxlength: 200 })),
    h('label', {}, 'Kind', h('input', { name: 'kind', value: existing?.kind ?? '', placeholder: 'e.g. raspberry-pi' })),
    h('label', {}, 'Tags (comma separated)', h('input', { name: 'tags', value: existing?.tags.join(', ') ?? '', placeholder: 'greenhouse, north' })),
    h(
      'div',
      { class: 'row2' },
      h('label', {}, 'Latitude', h('input', { name: 'lat', inputmode: 'decimal', value: existing?.location?.lat ?? '' })),
      h('label', {}, 'Longitude', h('input', { name: 'lon', inputmode: 'decimal', value: existing?.location?.lon ?? '' })),
    ),
    h(
      'label',
      {},
      'Metadata (JSON object)',
      h('textarea', { name: 'metadata', rows: 3, spellcheck: 'false' }, existing ? JSON.stringify(existing.metadata ?? {}, null, 2) : '{}'),
    ),
    h('div', { class: 'actions' }, submit),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFormError(form);
    const data = new FormData(form);
    const text = (key: string) => String(data.get(key) ?? '').trim();
    const input: DeviceInput = {
      name: text('name'),
      kind: text('kind') || null,
      tags: text('tags').split(',').map((t) => t.trim()).filter(Boolean),
    };
    const local: Record<string, string> = {};
    if (!input.name) local.name = 'a name is required';
    const lat = text('lat');
    const lon = text('lon');
    if (lat || lon) {
      const location = { lat: Number(lat), lon: Number(lon) };
      if (!lat || !lon || !Number.isFinite(location.lat) || !Number.isFinite(location.lon)) {
        local.lat = 'latitude and longitude are both numbers, or both empty';
      } else input.location = location;
    } else if (existing?.location) input.location = null;
    try {
      const metadata = JSON.parse(text('metadata') || '{}');
      if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) throw new Error();
      input.metadata = metadata;
    } catch {
      local.metadata = 'must be a JSON object, e.g. {"room": "lab"}';
    }
    if (Object.keys(local).length) {
      showFormError(form, new api.ApiError(422, 'invalid_field', 'Please fix the marked fields.', local));
      return;
    }
    if (!existing && input.kind === null) delete input.kind;
    submit.disabled = true;
    try {
      await save(input);
    } catch (err) {
      showFormError(form, err);
      submit.disabled = false;
    }
  });
  return form;
}

/** The one-time enrollment token and the command line that uses it. */
function showEnrollment(device: Device & { enrollment_token: string }): Promise<void> {
  const command = `edgewatch-agent enroll --server ${window.location.origin} --token ${device.enrollment_token}`;
  return modal(`Enroll ${device.name}`, (close) => {
    const code = h('code', { class: 'enroll-command', id: 'enroll-command' }, command);
    const copy = h(
      'button',
      {
        type: 'button',
        onclick: async () => {
          try {
            await navigator.clipboard.writeText(command);
            copy.textContent = 'Copied';
          } catch {
            // Without clipboard access (plain http), select it for Ctrl-C instead.
            const range = document.createRange();
            range.selectNodeContents(code);
            window.getSelection()?.removeAllRanges();
            window.getSelection()?.addRange(range);
            copy.textContent = 'Selected: press Ctrl-C';
          }
        },
      },
      'Copy',
    );
    return h(
      'div',
      { class: 'enrollment' },
      h('p', {}, 'Run this on the device to enroll it. The token is shown only now and expires; create the device again if you lose it.'),
      h('pre', {}, code),
      h('p', { class: 'muted small' }, 'Token: ', h('span', { class: 'token', id: 'enrollment-token' }, device.enrollment_token)),
      h('p', { class: 'muted small' }, 'Then start it with ', h('code', {}, 'edgewatch-agent run'), '.'),
      h(
        'div',
        { class: 'actions' },
        copy,
        h('a', { href: `#/devices/${device.id}`, class: 'button', onclick: () => close() }, 'Open device'),
        h('button', { type: 'button', class: 'primary', onclick: close }, 'Done'),
      ),
    );
  });
}
