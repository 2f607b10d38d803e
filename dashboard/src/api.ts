// The REST client: every call of API.md the dashboard makes, one origin (the gateway), the
// session's access token on each request. Tokens live in localStorage so a reload keeps the
// session; the access token is refreshed shortly before it expires (and once more on a 401),
// and a 401 that a refresh cannot fix ends the session, which sends the user to sign in.
// Errors keep the contract's body (`{error: {code, message, fields}}`) so pages can show it.

export type DeviceStatus = 'never_seen' | 'online' | 'offline';

export interface Device {
  id: string;
  name: string;
  kind: string | null;
  tags: string[];
  location: { lat: number; lon: number } | null;
  metadata: Record<string, unknown>;
  owner_id: string;
  status: DeviceStatus;
  last_seen_at: string | null;
  config_version: number;
  created_at: string;
  updated_at: string;
}

export interface DeviceInput {
  name?: string;
  kind?: string | null;
  tags?: string[];
  location?: { lat: number; lon: number } | null;
  metadata?: Record<string, unknown>;
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface ConfigView {
  version: number;
  config: Record<string, unknown>;
  updated_at: string | null;
  applied_version: number | null;
}

export interface Me {
  id: string;
  email: string;
  name: string | null;
  role: 'admin' | 'user';
}

export type Point = [string, number];
export type ForecastPoint = [string, number, number, number];

export interface Forecast {
  model: string;
  trained_on: unknown;
  mae_backtest: number | null;
  points: ForecastPoint[];
}

/** A failed call, with the contract's error body when the server sent one. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly fields: Record<string, string> = {},
  ) {
    super(message);
  }

  /** One line a person can act on, fields included. */
  describe(): string {
    const fields = Object.entries(this.fields).map(([field, why]) => `${field}: ${why}`);
    return fields.length ? `${this.message} (${fields.join('; ')})` : this.message;
  }
}

interface Tokens {
  access_token: string;
  refresh_token: string;
  /** Epoch milliseconds when the access token expires. */
  expires_at: number;
}

const STORAGE_KEY = 'edgewatch.session';
/** Refresh this long before the access token expires. */
const REFRESH_MARGIN_MS = 60_000;

let tokens: Tokens | null = load();
let refreshing: Promise<boolean> | null = null;
let refreshTimer: number | undefined;
const listeners = new Set<(signedIn: boolean) => void>();

function load(): Tokens | null {
  try {
    const raw = localStorage.getItem(STORAGE_KEY);
    return raw ? (JSON.parse(raw) as Tokens) : null;
  } catch {
    return null;
  }
}

function store(next: Tokens | null): void {
  tokens = next;
  if (next) localStorage.setItem(STORAGE_KEY, JSON.stringify(next));
  else localStorage.removeItem(STORAGE_KEY);
  scheduleRefresh();
  for (const listener of listeners) listener(next !== null);
}

function scheduleRefresh(): void {
  window.clearTimeout(refreshTimer);
  if (!tokens) return;
  const wait = Math.max(1_000, tokens.expires_at - Date.now() - REFRESH_MARGIN_MS);
  refreshTimer = window.setTimeout(() => void refresh(), wait);
}

export function signedIn(): boolean {
  return tokens !== null;
}

export function accessToken(): string | null {
  return tokens?.access_token ?? null;
}

/** Called with `false` when the session ends (sign-out, or a 401 no refresh could fix). */
export function onSessionChange(listener: (signedIn: boolean) => void): void {
  listeners.add(listener);
}

export function startSession(): void {
  scheduleRefresh();
}

function accept(pair: { access_token: string; refresh_token: string; expires_in: number }): void {
  store({
    access_token: pair.access_token,
    refresh_token: pair.refresh_token,
    expires_at: Date.now() + pair.expires_in * 1000,
  });
}

/** Trades the refresh token for a new pair; one refresh at a time (the old token dies). */
export function refresh(): Promise<boolean> {
  if (!tokens) return Promise.resolve(false);
  refreshing ??= (async () => {
    try {
      const pair = await send('POST', '/api/v1/auth/refresh', {
        body: { refresh_token: tokens!.refresh_token },
        auth: false,
      });
      accept(pair);
      return true;
    } catch (err) {
      // Only a refusal ends the session; a network blip keeps it for the next try.
      if (err instanceof ApiError && (err.status === 401 || err.status === 400)) store(null);
      else scheduleRefresh();
      return false;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

interface SendOptions {
  body?: unknown;
  query?: Record<string, string | number | undefined | null>;
  auth?: boolean;
  signal?: AbortSignal;
}

async function send(method: string, path: string, options: SendOptions = {}): Promise<any> {
  const url = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(options.query ?? {})) {
    if (value !== undefined && value !== null && value !== '') url.searchParams.set(key, String(value));
  }
  const attempt = async (): Promise<Response> => {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    if (options.auth !== false && tokens) headers.authorization = `Bearer ${tokens.access_token}`;
    return fetch(url, {
      method,
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      signal: options.signal,
    });
  };
  let response: Response;
  try {
    response = await attempt();
    if (response.status === 401 && options.auth !== false && tokens) {
      if (await refresh()) response = await attempt();
      else store(null);
    }
  } catch (err) {
    if ((err as Error).name === 'AbortError') throw err;
    throw new ApiError(0, 'unreachable', 'Cannot reach the server; check your connection and retry.');
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    const error = (body as { error?: { code?: string; message?: string; fields?: Record<string, string> } })
      ?.error;
    if (response.status === 401 && options.auth !== false) store(null);
    throw new ApiError(
      response.status,
      error?.code ?? `http_${response.status}`,
      error?.message ?? `The server answered ${response.status} ${response.statusText}`.trim(),
      error?.fields ?? {},
    );
  }
  return body;
}

// --- auth -------------------------------------------------------------------------------------

export async function login(email: string, password: string): Promise<void> {
  accept(await send('POST', '/api/v1/auth/login', { body: { email, password }, auth: false }));
}

export async function register(email: string, password: string, name?: string): Promise<void> {
  await send('POST', '/api/v1/auth/register', {
    body: name ? { email, password, name } : { email, password },
    auth: false,
  });
}

export async function logout(): Promise<void> {
  const current = tokens;
  try {
    if (current) await send('POST', '/api/v1/auth/logout', { body: { refresh_token: current.refresh_token } });
  } finally {
    store(null);
  }
}

export function me(): Promise<Me> {
  return send('GET', '/api/v1/auth/me');
}

// --- devices ----------------------------------------------------------------------------------

export interface DeviceQuery {
  q?: string;
  tag?: string;
  status?: string;
  kind?: string;
  limit?: number;
  cursor?: string | null;
}

export function listDevices(query: DeviceQuery, signal?: AbortSignal): Promise<Page<Device>> {
  return send('GET', '/api/v1/devices', { query: { ...query }, signal });
}

export function getDevice(id: string): Promise<Device> {
  return send('GET', `/api/v1/devices/${encodeURIComponent(id)}`);
}

export function createDevice(input: DeviceInput): Promise<Device & { enrollment_token: string }> {
  return send('POST', '/api/v1/devices', { body: input });
}

export function updateDevice(id: string, input: DeviceInput): Promise<Device> {
  return send('PATCH', `/api/v1/devices/${encodeURIComponent(id)}`, { body: input });
}

export function deleteDevice(id: string): Promise<void> {
  return send('DELETE', `/api/v1/devices/${encodeURIComponent(id)}`);
}

export function getConfig(id: string): Promise<ConfigView> {
  return send('GET', `/api/v1/devices/${encodeURIComponent(id)}/config`);
}

export function putConfig(id: string, config: Record<string, unknown>): Promise<ConfigView> {
  return send('PUT', `/api/v1/devices/${encodeURIComponent(id)}/config`, { body: { config } });
}

// --- monitoring -------------------------------------------------------------------------------

export function metricCatalogue(id: string): Promise<{ items: { name: string; first_ts: string; last_ts: string }[] }> {
  return send('GET', `/api/v1/telemetry/${encodeURIComponent(id)}/metrics`);
}

export function history(
  id: string,
  query: { metric: string; from: string; to: string; step?: string; agg?: string },
  signal?: AbortSignal,
): Promise<{ points: Point[] }> {
  return send('GET', `/api/v1/telemetry/${encodeURIComponent(id)}`, { query, signal });
}

/** The forecast, or null when there is none (404: no model for it yet, or no such route). */
export async function forecast(id: string, metric: string, horizon: string): Promise<Forecast | null> {
  try {
    return await send('GET', `/api/v1/forecast/${encodeURIComponent(id)}`, { query: { metric, horizon } });
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 405 || err.status === 501)) return null;
    throw err;
  }
}
