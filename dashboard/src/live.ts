// The live link: one Socket.IO connection (namespace `/live`, path `/socket.io/`) per session,
// shared by the pages. The token is read on every (re)connect, so a refreshed access token is
// used after a reconnect. Subscriptions are remembered and replayed on reconnect, because the
// server's rooms belong to the old socket. Status and telemetry pushes fan out to handlers the
// pages register; a page removes its handlers when it is left.

import { io, type Socket } from 'socket.io-client';
import { accessToken, refresh } from './api';

export interface TelemetryEvent {
  device_id: string;
  seq: number;
  ts: string;
  metrics: Record<string, number>;
}

export interface StatusEvent {
  device_id: string;
  status: 'online' | 'offline' | 'never_seen';
  ts: string;
}

type Ack = { ok: boolean; error?: string };
type LinkState = 'connecting' | 'live' | 'down';

let socket: Socket | null = null;
let fleetWanted = 0;
const devicesWanted = new Map<string, number>();
const telemetryHandlers = new Set<(event: TelemetryEvent) => void>();
const statusHandlers = new Set<(event: StatusEvent) => void>();
const stateHandlers = new Set<(state: LinkState, why?: string) => void>();
let state: LinkState = 'down';
let retryDelay = 1_000;

function setState(next: LinkState, why?: string): void {
  state = next;
  for (const handler of stateHandlers) handler(next, why);
}

function emit(event: string, payload: unknown): Promise<Ack> {
  return new Promise((resolve) => {
    if (!socket) return resolve({ ok: false, error: 'not connected' });
    socket.timeout(10_000).emit(event, payload, (err: Error | null, ack: Ack) =>
      resolve(err ? { ok: false, error: 'no answer from the server' } : ack),
    );
  });
}

function connect(): Socket {
  if (socket) return socket;
  setState('connecting');
  socket = io('/live', {
    path: '/socket.io/',
    auth: (cb) => cb({ token: accessToken() ?? '' }),
    // WebSocket first (one request instead of a polling handshake); polling when it fails.
    transports: ['websocket', 'polling'],
    reconnectionDelayMax: 10_000,
  });
  socket.on('connect', () => {
    retryDelay = 1_000;
    setState('live');
    if (fleetWanted > 0) void emit('subscribe_fleet', {});
    for (const id of devicesWanted.keys()) void emit('subscribe', { device_id: id });
  });
  socket.on('connect_error', (err) => {
    setState('down', err.message);
    // The server refused the handshake (a token that expired or was revoked): Socket.IO does not
    // retry that by itself. Refresh the session and connect again, backing off; a refresh that
    // fails ends the session, which closes this link.
    const s = socket;
    if (s && !s.active) {
      window.setTimeout(async () => {
        if (socket === s && (await refresh())) s.connect();
      }, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 30_000);
    }
  });
  socket.on('disconnect', () => setState('connecting'));
  socket.on('telemetry', (event: TelemetryEvent) => telemetryHandlers.forEach((handler) => handler(event)));
  socket.on('status', (event: StatusEvent) => statusHandlers.forEach((handler) => handler(event)));
  return socket;
}

/** Closes the link (sign-out). */
export function disconnect(): void {
  socket?.disconnect();
  socket = null;
  fleetWanted = 0;
  devicesWanted.clear();
  setState('down');
}

export function linkState(): LinkState {
  return state;
}

export function onLinkState(handler: (state: LinkState, why?: string) => void): () => void {
  stateHandlers.add(handler);
  return () => stateHandlers.delete(handler);
}

/** Status of every device the user may see; returns the unsubscribe function. */
export function watchFleet(handler: (event: StatusEvent) => void): () => void {
  statusHandlers.add(handler);
  fleetWanted++;
  const s = connect();
  if (s.connected && fleetWanted === 1) void emit('subscribe_fleet', {});
  return () => {
    statusHandlers.delete(handler);
    fleetWanted = Math.max(0, fleetWanted - 1);
  };
}

/**
 * Asks again for the fleet's status: the server decides which devices a user sees when asked,
 * so devices created since then are only covered after this.
 */
export function refreshFleet(): void {
  if (fleetWanted > 0 && socket?.connected) void emit('subscribe_fleet', {});
}

/**
 * Telemetry and status of one device. `onRefused` hears the ack's error (not yours, unknown).
 * Returns the unsubscribe function.
 */
export function watchDevice(
  id: string,
  onTelemetry: (event: TelemetryEvent) => void,
  onStatus: (event: StatusEvent) => void,
  onRefused: (why: string) => void,
): () => void {
  const telemetry = (event: TelemetryEvent) => event.device_id === id && onTelemetry(event);
  const status = (event: StatusEvent) => event.device_id === id && onStatus(event);
  telemetryHandlers.add(telemetry);
  statusHandlers.add(status);
  devicesWanted.set(id, (devicesWanted.get(id) ?? 0) + 1);
  const s = connect();
  if (s.connected) {
    void emit('subscribe', { device_id: id }).then((ack) => {
      if (!ack.ok) onRefused(ack.error ?? 'refused');
    });
  }
  return () => {
    telemetryHandlers.delete(telemetry);
    statusHandlers.delete(status);
    const left = (devicesWanted.get(id) ?? 1) - 1;
    if (left > 0) devicesWanted.set(id, left);
    else {
      devicesWanted.delete(id);
      void emit('unsubscribe', { device_id: id });
    }
  };
}
