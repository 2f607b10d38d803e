// Time-series charts on uPlot (small and fast: thousands of points redraw in a frame). A chart
// holds one metric: its history or live points, and optionally a forecast drawn as a dashed line
// with its lo..hi band. uPlot wants one shared x array, so history and forecast are merged on
// time with gaps (null) where a series has no point. Charts follow their container's width.

import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { formatValue } from './ui';

export interface ChartOptions {
  metric: string;
  height: number;
  /** Sparkline: no axes or legend. */
  compact?: boolean;
  /** Keep at most this many points (live charts). */
  maxPoints?: number;
}

export class Chart {
  private plot: uPlot;
  private xs: number[] = [];
  private ys: (number | null)[] = [];
  private forecast: { xs: number[]; mean: number[]; lo: number[]; hi: number[] } | null = null;
  private window: [number, number] | null = null;
  private observer: ResizeObserver;
  private pending = false;

  constructor(
    readonly el: HTMLElement,
    private readonly options: ChartOptions,
  ) {
    const styles = getComputedStyle(document.documentElement);
    const line = styles.getPropertyValue('--accent').trim() || '#2563eb';
    const muted = styles.getPropertyValue('--muted').trim() || '#888';
    const value = (_: uPlot, v: number | null) => (v === null || v === undefined ? '—' : formatValue(options.metric, v));
    const compact = options.compact ?? false;
    this.plot = new uPlot(
      {
        width: Math.max(100, el.clientWidth || 300),
        height: options.height,
        legend: { show: !compact },
        cursor: { show: !compact, drag: { x: true, y: false } },
        scales: {
          x: {
            time: true,
            // The chosen window, widened to the data (live points, a forecast past `to`).
            // (uPlot's own min/max for one point spans years, so the extents are ours.)
            range: (_u, min, max) => {
              const xs = this.xs;
              const fx = this.forecast?.xs ?? [];
              const first = Math.min(xs[0] ?? Infinity, fx[0] ?? Infinity);
              const last = Math.max(xs[xs.length - 1] ?? -Infinity, fx[fx.length - 1] ?? -Infinity);
              const w = this.window;
              if (w) return [Math.min(w[0], first), Math.max(w[1], last)];
              if (!Number.isFinite(first)) return [min, max];
              return first === last ? [first - 60, last + 60] : [first, last];
            },
          },
        },
        axes: compact
          ? [{ show: false }, { show: false }]
          : [
              { stroke: muted, grid: { stroke: 'rgba(128,128,128,0.15)' } },
              {
                stroke: muted,
                grid: { stroke: 'rgba(128,128,128,0.15)' },
                size: 70,
                values: (_u, splits) => splits.map((v) => formatValue(options.metric, v)),
              },
            ],
        series: [
          {},
          { label: options.metric, stroke: line, width: 1.5, value, spanGaps: false, points: compact ? { show: false } : {} },
          { label: 'forecast', stroke: muted, dash: [6, 4], width: 1.5, value, points: { show: false } },
          { label: 'lo', stroke: 'transparent', value, points: { show: false } },
          { label: 'hi', stroke: 'transparent', value, points: { show: false } },
        ],
        bands: [{ series: [4, 3], fill: 'rgba(128,128,128,0.18)' }],
      },
      this.data(),
      el,
    );
    this.observer = new ResizeObserver(() => {
      const width = el.clientWidth;
      if (width > 0 && Math.abs(width - this.plot.width) > 1) this.plot.setSize({ width, height: options.height });
    });
    this.observer.observe(el);
    el.classList.add('no-forecast');
  }

  get metric(): string {
    return this.options.metric;
  }

  get points(): number {
    return this.xs.length;
  }

  /** Shows at least this time window (ms since the epoch), whatever the data covers. */
  setWindow(from: number, to: number): void {
    this.window = [from / 1000, to / 1000];
  }

  /** Replaces the history: `[iso time, value]` pairs, oldest first. */
  setPoints(points: [string, number | null][]): void {
    this.xs = points.map(([ts]) => Date.parse(ts) / 1000);
    this.ys = points.map(([, v]) => v);
    this.redraw();
  }

  /** Appends a live point (ignored when older than the last one, e.g. a redelivery). */
  push(ts: string, value: number): void {
    const x = Date.parse(ts) / 1000;
    const last = this.xs[this.xs.length - 1];
    if (last !== undefined && x <= last) return;
    this.xs.push(x);
    this.ys.push(value);
    const max = this.options.maxPoints;
    if (max && this.xs.length > max) {
      this.xs.splice(0, this.xs.length - max);
      this.ys.splice(0, this.ys.length - max);
    }
    // Many metrics can arrive in one event: draw once per frame.
    if (!this.pending) {
      this.pending = true;
      requestAnimationFrame(() => {
        this.pending = false;
        this.redraw();
      });
    }
  }

  setForecast(points: [string, number, number, number][] | null): void {
    this.forecast = points?.length
      ? {
          xs: points.map(([ts]) => Date.parse(ts) / 1000),
          mean: points.map((p) => p[1]),
          lo: points.map((p) => p[2]),
          hi: points.map((p) => p[3]),
        }
      : null;
    this.el.classList.toggle('no-forecast', this.forecast === null);
    this.redraw();
  }

  destroy(): void {
    this.observer.disconnect();
    this.plot.destroy();
  }

  private redraw(): void {
    this.plot.setData(this.data());
    this.el.dataset.points = String(this.xs.length);
  }

  private data(): uPlot.AlignedData {
    const f = this.forecast;
    if (!f) {
      const none = this.xs.map(() => null);
      return [this.xs, this.ys, none, none, none];
    }
    // Merge on time; both inputs are sorted.
    const xs: number[] = [];
    const series: (number | null)[][] = [[], [], [], []];
    let i = 0;
    let j = 0;
    while (i < this.xs.length || j < f.xs.length) {
      const takeHistory = j >= f.xs.length || (i < this.xs.length && this.xs[i] <= f.xs[j]);
      const takeForecast = i >= this.xs.length || (j < f.xs.length && f.xs[j] <= this.xs[i]);
      xs.push(takeHistory ? this.xs[i] : f.xs[j]);
      series[0].push(takeHistory ? this.ys[i] : null);
      series[1].push(takeForecast ? f.mean[j] : null);
      series[2].push(takeForecast ? f.lo[j] : null);
      series[3].push(takeForecast ? f.hi[j] : null);
      if (takeHistory) i++;
      if (takeForecast) j++;
    }
    return [xs, ...series];
  }
}
