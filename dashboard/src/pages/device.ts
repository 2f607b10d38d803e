// One device: live charts of its metrics (Socket.IO `subscribe {device_id}`, `telemetry`
// events), history with a range picker (bucketed `step`/`agg` queries sized to ~360 points, so
// long ranges are served from the store's rollups), the forecast overlay with its band (404 = no
// forecast), the config editor (`PUT config` makes a new version; the applied version is what
// the device last reported), and a status timeline (reporting vs silent buckets over the range,
// plus the status changes heard live while the page is open).

import * as api from '../api';
import type { ConfigView, Device } from '../api';
import { Chart } from '../chart';
import * as live from '../live';
import { deviceForm } from './fleet';
import {
  ago,
  confirmAction,
  empty,
  errorText,
  failure,
  formatValue,
  h,
  loading,
  modal,
  replace,
  statusBadge,
  timeText,
  toast,
} from '../ui';

interface Range {
  label: string;
  ms: number;
  step: string;
  horizon: string;
}

const RANGES: Range[] = [
  { label: '1 h', ms: 3_600_000, step: '10s', horizon: '6h' },
  { label: '6 h', ms: 6 * 3_600_000, step: '1m', horizon: '12h' },
  { label: '24 h', ms: 24 * 3_600_000, step: '5m', horizon: '24h' },
  { label: '7 d', ms: 7 * 86_400_000, step: '30m', horizon: '48h' },
  { label: '30 d', ms: 30 * 86_400_000, step: '2h', horizon: '72h' },
];

/** Shown first when present; the rest follow by name. */
const PREFERRED = ['cpu.usage_pct', 'mem.used_bytes', 'load.1m', 'mem.available_bytes', 'swap.used_bytes', 'procs.count'];
const MAX_TILES = 8;
const LIVE_POINTS = 300;

export function mountDevice(root: HTMLElement, id: string): () => void {
  let disposed = false;
  const cleanups: (() => void)[] = [];
  const charts: Chart[] = [];
  replace(root, loading('the device'));

  let device: Device | null = null;
  let range = RANGES[0];
  let selected: string | null = null;
  let historyChart: Chart | null = null;
  let historyRequest: AbortController | null = null;
  const tiles = new Map<string, { tile: HTMLElement; value: HTMLElement; chart: Chart }>();

  const header = h('div', { class: 'device-header' });
  const tilesEl = h('div', { class: 'tiles', id: 'live-tiles' });
  const liveNote = h('p', { class: 'muted small' });
  const metricSelect = h('select', { 'aria-label': 'Metric', id: 'metric-select' });
  const rangeButtons = h('div', { class: 'segmented', role: 'group', 'aria-label': 'Range' });
  const historyEl = h('div', { class: 'history-chart', id: 'history-chart' });
  const historyNote = h('p', { class: 'muted small', id: 'forecast-note' });
  const timelineEl = h('div', { class: 'timeline', id: 'status-timeline' });
  const timelineLog = h('ul', { class: 'timeline-log small' });
  const configEl = h('div', { class: 'config', id: 'config-editor' });

  async function start(): Promise<void> {
    try {
      device = await api.getDevice(id);
    } catch (err) {
      if (disposed) return;
      replace(
        root,
        err instanceof api.ApiError && err.status === 404
          ? empty('This device does not exist (any more).', h('a', { href: '#/fleet' }, 'Back to the fleet'))
          : failure(err, () => void start()),
      );
      return;
    }
    if (disposed) return;
    renderHeader();
    for (const r of RANGES) {
      rangeButtons.appendChild(
        h('button', { type: 'button', 'data-range': r.label, 'aria-pressed': String(r === range), onclick: () => pickRange(r) }, r.label),
      );
    }
    metricSelect.addEventListener('change', () => pickMetric(metricSelect.value));
    replace(
      root,
      header,
      h('section', { class: 'card' }, h('h2', {}, 'Live'), liveNote, tilesEl),
      h(
        'section',
        { class: 'card' },
        h('div', { class: 'section-head' }, h('h2', {}, 'History'), metricSelect, rangeButtons),
        historyEl,
        historyNote,
      ),
      h('section', { class: 'card' }, h('h2', {}, 'Status timeline'), timelineEl, timelineLog),
      h('section', { class: 'card' }, h('h2', {}, 'Configuration'), configEl),
    );
    cleanups.push(
      live.watchDevice(
        id,
        (event) => onTelemetry(event),
        (event) => {
          if (!device) return;
          device.status = event.status;
          if (event.status === 'online') device.last_seen_at = event.ts;
          renderHeader();
          timelineLog.prepend(h('li', {}, `${timeText(event.ts)} — `, statusBadge(event.status)));
          // A status message carries the config version the device applied.
          void loadConfig(false);
        },
        (why) => (liveNote.textContent = `Live updates refused: ${why}`),
      ),
    );
    void loadMetrics();
    void loadConfig(true);
    const poll = window.setInterval(() => void loadConfig(false), 5_000);
    cleanups.push(() => window.clearInterval(poll));
  }

  function renderHeader(): void {
    if (!device) return;
    const d = device;
    replace(
      header,
      h('a', { href: '#/fleet', class: 'back' }, '← Fleet'),
      h(
        'div',
        { class: 'title-row' },
        h('h1', { id: 'device-name' }, d.name),
        statusBadge(d.status),
        h('span', { class: 'spacer' }),
        h('button', { type: 'button', onclick: () => void edit() }, 'Edit'),
        h('button', { type: 'button', class: 'danger', id: 'delete-device', onclick: () => void remove() }, 'Delete'),
      ),
      h(
        'dl',
        { class: 'facts' },
        h('dt', {}, 'Last seen'),
        h('dd', { title: timeText(d.last_seen_at) }, ago(d.last_seen_at)),
        h('dt', {}, 'Kind'),
        h('dd', {}, d.kind ?? '—'),
        h('dt', {}, 'Tags'),
        h('dd', {}, d.tags.length ? d.tags.map((t) => h('span', { class: 'tag' }, t)) : '—'),
        d.location && h('dt', {}, 'Location'),
        d.location && h('dd', {}, `${d.location.lat}, ${d.location.lon}`),
        h('dt', {}, 'ID'),
        h('dd', { class: 'mono' }, d.id),
      ),
    );
  }

  async function edit(): Promise<void> {
    if (!device) return;
    const current = device;
    await modal(`Edit ${current.name}`, (close) =>
      deviceForm(current, async (input) => {
        device = await api.updateDevice(current.id, input);
        renderHeader();
        toast(`Saved ${device.name}`);
        close();
      }),
    );
  }

  async function remove(): Promise<void> {
    if (!device) return;
    const ok = await confirmAction(
      'Delete device',
      `Delete “${device.name}”? Its credentials stop working at once; its agent will be refused.`,
      'Delete',
    );
    if (!ok) return;
    try {
      await api.deleteDevice(id);
      toast(`Deleted ${device.name}`);
      window.location.hash = '#/fleet';
    } catch (err) {
      toast(`Could not delete: ${errorText(err)}`, 'error');
    }
  }

  // --- metrics, live tiles --------------------------------------------------------------------

  function order(names: string[]): string[] {
    const rank = (n: string) => {
      const i = PREFERRED.indexOf(n);
      return i < 0 ? PREFERRED.length : i;
    };
    return [...new Set(names)].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  }

  async function loadMetrics(): Promise<void> {
    replace(tilesEl, loading('metrics'));
    let names: string[];
    try {
      names = (await api.metricCatalogue(id)).items.map((m) => m.name);
    } catch (err) {
      if (!disposed) replace(tilesEl, failure(err, () => void loadMetrics()));
      return;
    }
    if (disposed) return;
    // Tiles made by telemetry that arrived meanwhile stay; only the loading state goes.
    tilesEl.querySelectorAll(':scope > .state').forEach((el) => el.remove());
    const ordered = order(names);
    setMetricOptions(ordered);
    if (ordered.length === 0 && tiles.size === 0) {
      tilesEl.appendChild(
        empty('No readings yet. Charts appear as soon as the device sends its first batch.'),
      );
      liveNote.textContent = '';
      replace(historyEl, empty('No history yet.'));
      renderTimeline([]);
      return;
    }
    const since = new Date(Date.now() - 10 * 60_000).toISOString();
    const to = new Date(Date.now() + 60_000).toISOString();
    for (const name of ordered.slice(0, MAX_TILES)) {
      const tile = addTile(name);
      api.history(id, { metric: name, from: since, to }).then(
        ({ points }) => {
          if (disposed) return;
          tile.chart.setPoints(points.slice(-LIVE_POINTS));
          const last = points[points.length - 1];
          if (last) tile.value.textContent = formatValue(name, last[1]);
        },
        () => undefined,
      );
    }
    if (!selected && ordered.length) pickMetric(ordered[0]);
  }

  function setMetricOptions(names: string[]): void {
    const have = new Set(Array.from(metricSelect.options).map((o) => o.value));
    for (const name of names) if (!have.has(name)) metricSelect.appendChild(h('option', { value: name }, name));
  }

  function addTile(name: string): { tile: HTMLElement; value: HTMLElement; chart: Chart } {
    const existing = tiles.get(name);
    if (existing) return existing;
    const value = h('span', { class: 'tile-value' }, '—');
    const plotEl = h('div', { class: 'spark' });
    const tile = h(
      'button',
      { type: 'button', class: 'tile', 'data-metric': name, onclick: () => pickMetric(name) },
      h('span', { class: 'tile-name' }, name),
      value,
      plotEl,
    );
    tilesEl.querySelector('.state')?.remove();
    tilesEl.appendChild(tile);
    const chart = new Chart(plotEl, { metric: name, height: 48, compact: true, maxPoints: LIVE_POINTS });
    charts.push(chart);
    const entry = { tile, value, chart };
    tiles.set(name, entry);
    return entry;
  }

  function onTelemetry(event: live.TelemetryEvent): void {
    const names = order(Object.keys(event.metrics));
    tilesEl.querySelectorAll(':scope > .state').forEach((el) => el.remove());
    setMetricOptions(names);
    // The first batch of a new device: the history follows its first metric.
    if (!selected && names.length) pickMetric(names[0]);
    for (const name of names) {
      let tile = tiles.get(name);
      if (!tile && tiles.size < MAX_TILES) tile = addTile(name);
      if (!tile) continue;
      const v = event.metrics[name];
      tile.chart.push(event.ts, v);
      tile.value.textContent = formatValue(name, v);
    }
    liveNote.textContent = `Last reading ${new Date(event.ts).toLocaleTimeString()} (seq ${event.seq})`;
    if (selected && range === RANGES[0] && historyChart && event.metrics[selected] !== undefined) {
      historyChart.push(event.ts, event.metrics[selected]);
    }
    if (device && device.status !== 'online') {
      device.status = 'online';
      device.last_seen_at = event.ts;
      renderHeader();
    }
  }

  // --- history, forecast, timeline ------------------------------------------------------------

  function pickRange(r: Range): void {
    range = r;
    rangeButtons.querySelectorAll('button').forEach((b) => b.setAttribute('aria-pressed', String(b.dataset.range === r.label)));
    void loadHistory();
  }

  function pickMetric(name: string): void {
    selected = name;
    metricSelect.value = name;
    tiles.forEach(({ tile }, n) => tile.classList.toggle('selected', n === name));
    void loadHistory();
  }

  async function loadHistory(): Promise<void> {
    if (!selected) return;
    const metric = selected;
    historyRequest?.abort();
    const request = new AbortController();
    historyRequest = request;
    historyEl.setAttribute('aria-busy', 'true');
    historyNote.textContent = 'Loading…';
    const to = new Date(Date.now() + 1000);
    const from = new Date(to.getTime() - range.ms);
    const window = { metric, from: from.toISOString(), to: to.toISOString(), step: range.step };
    try {
      const [avg, count] = await Promise.all([
        api.history(id, { ...window, agg: 'avg' }, request.signal),
        api.history(id, { ...window, agg: 'count' }, request.signal),
      ]);
      if (disposed || request.signal.aborted) return;
      if (historyChart && historyChart.metric !== metric) dropHistoryChart();
      if (!historyChart) {
        replace(historyEl);
        historyChart = new Chart(historyEl, { metric, height: 260 });
        charts.push(historyChart);
      }
      historyChart.setWindow(from.getTime(), to.getTime());
      historyChart.setPoints(avg.points);
      renderTimeline(count.points);
      historyEl.removeAttribute('aria-busy');
      historyNote.textContent = avg.points.length
        ? `${avg.points.length} bucket${avg.points.length === 1 ? '' : 's'} of ${range.step} (average)`
        : `No ${metric} readings in the last ${range.label}.`;
    } catch (err) {
      if (disposed || request.signal.aborted) return;
      dropHistoryChart();
      replace(historyEl, failure(err, () => void loadHistory()));
      historyNote.textContent = '';
      return;
    }
    try {
      const forecast = await api.forecast(id, metric, range.horizon);
      if (disposed || request.signal.aborted || !historyChart) return;
      historyChart.setForecast(forecast?.points ?? null);
      historyNote.textContent += forecast
        ? ` · forecast: ${forecast.model}${forecast.mae_backtest !== null ? `, backtest MAE ${formatValue(metric, forecast.mae_backtest)}` : ''} (shaded: its band)`
        : ' · no forecast for this metric';
    } catch (err) {
      if (!disposed && !request.signal.aborted) historyNote.textContent += ` · forecast unavailable: ${errorText(err)}`;
    }
  }

  function dropHistoryChart(): void {
    if (!historyChart) return;
    historyChart.destroy();
    charts.splice(charts.indexOf(historyChart), 1);
    historyChart = null;
  }

  /** One cell per bucket: reporting (readings arrived) or silent. */
  function renderTimeline(counts: api.Point[]): void {
    if (counts.length === 0) {
      replace(timelineEl, h('p', { class: 'muted small' }, `No readings in the last ${range.label}: the device was silent or never seen.`));
      return;
    }
    const step = counts.length > 1 ? Date.parse(counts[1][0]) - Date.parse(counts[0][0]) : 0;
    const start = Date.now() - range.ms;
    const cells = Math.min(360, Math.max(1, Math.round(range.ms / Math.max(step, 1000))));
    const width = range.ms / cells;
    const on = new Array<boolean>(cells).fill(false);
    for (const [ts, n] of counts) {
      const i = Math.floor((Date.parse(ts) - start) / width);
      if (n > 0 && i >= 0 && i < cells) on[i] = true;
    }
    const reporting = on.filter(Boolean).length;
    replace(
      timelineEl,
      h('div', { class: 'strip', role: 'img', 'aria-label': `Reporting in ${reporting} of ${cells} intervals` }, on.map((v) => h('span', { class: v ? 'on' : 'off' }))),
      h('div', { class: 'strip-axis muted small' }, h('span', {}, `${range.label} ago`), h('span', {}, 'now')),
    );
  }

  // --- config ---------------------------------------------------------------------------------

  let editing = false;
  const versions = h('p', { class: 'versions', id: 'config-versions' });
  const textarea = h('textarea', { rows: 8, spellcheck: 'false', 'aria-label': 'Configuration (JSON)', id: 'config-text' });
  const configError = h('div', { class: 'form-alert', role: 'alert', hidden: true });
  const saveButton = h('button', { type: 'button', class: 'primary', id: 'config-save', onclick: () => void saveConfig() }, 'Save new version');
  textarea.addEventListener('input', () => (editing = true));

  function renderVersions(view: ConfigView): void {
    const applied = view.applied_version;
    versions.dataset.latest = String(view.version);
    versions.dataset.applied = String(applied ?? 0);
    replace(
      versions,
      h('span', {}, 'Latest version ', h('strong', { id: 'config-latest' }, String(view.version))),
      ' · ',
      h('span', {}, 'applied by the device: ', h('strong', { id: 'config-applied' }, applied ? String(applied) : 'none yet')),
      applied !== null && applied >= view.version
        ? h('span', { class: 'badge status-online' }, 'up to date')
        : view.version > 0 && h('span', { class: 'badge status-offline' }, 'pending'),
      view.updated_at && h('span', { class: 'muted small' }, ` · changed ${ago(view.updated_at)}`),
    );
  }

  async function loadConfig(first: boolean): Promise<void> {
    if (disposed) return;
    if (first) replace(configEl, loading('the configuration'));
    let view: ConfigView;
    try {
      view = await api.getConfig(id);
    } catch (err) {
      if (!disposed && first) replace(configEl, failure(err, () => void loadConfig(true)));
      return;
    }
    if (disposed) return;
    renderVersions(view);
    if (first) {
      textarea.value = JSON.stringify(view.config, null, 2);
      replace(
        configEl,
        versions,
        h('p', { class: 'muted small' }, 'Keys the agent knows: interval_s, collectors, drain_rate, batch_max_readings.'),
        configError,
        textarea,
        h('div', { class: 'actions' }, saveButton),
      );
    } else if (!editing) {
      textarea.value = JSON.stringify(view.config, null, 2);
    }
  }

  async function saveConfig(): Promise<void> {
    configError.hidden = true;
    let config: Record<string, unknown>;
    try {
      config = JSON.parse(textarea.value || '{}');
      if (typeof config !== 'object' || config === null || Array.isArray(config)) throw new Error('not an object');
    } catch (err) {
      configError.textContent = `The configuration must be a JSON object: ${(err as Error).message}`;
      configError.hidden = false;
      return;
    }
    saveButton.disabled = true;
    try {
      const view = await api.putConfig(id, config);
        editing = false;
      renderVersions(view);
      textarea.value = JSON.stringify(view.config, null, 2);
      toast(`Saved configuration version ${view.version}`);
    } catch (err) {
      configError.textContent = errorText(err);
      configError.hidden = false;
    } finally {
      saveButton.disabled = false;
    }
  }

  void start();
  return () => {
    disposed = true;
    historyRequest?.abort();
    cleanups.forEach((c) => c());
    charts.forEach((c) => c.destroy());
  };
}
