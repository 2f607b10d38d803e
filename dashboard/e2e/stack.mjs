#!/usr/bin/env node
// The development stack: signing, devices and monitoring as separate processes on loopback, on
// the real test servers (a RabbitMQ vhost of its own between devices and monitoring, Mosquitto
// for device MQTT, SQLite files for the databases), behind the gateway of ./gateway.mjs, with
// monitoring serving the built dashboard. It registers the first account (the admin), writes
// `{base_url, email, password, mqtt_url}` to --state FILE and runs until SIGINT/SIGTERM.
//
// Usage: node e2e/stack.mjs --bin-dir TARGET/debug [--static-dir dist] [--state FILE] [--port N]
// The servers come from `scripts/services.sh env` (EDGEWATCH_TEST_AMQP_URL, _AMQP_ADMIN_URL,
// _MQTT_URL). Logs of each service go to <tmp dir>/<service>.log (printed at start); the
// directory is removed at stop unless EDGEWATCH_KEEP_STACK is set.

import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startGateway } from './gateway.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

function args() {
  const out = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i];
    if (key === '--help' || key === '-h') {
      const text = fs.readFileSync(new URL(import.meta.url), 'utf8').split('\n');
      // The header comment is the help.
      console.log(text.slice(1, text.findIndex((l, i) => i > 0 && !l.startsWith('//'))).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
      process.exit(0);
    }
    if (!key.startsWith('--') || argv[i + 1] === undefined) fail(`unexpected argument ${key} (see --help)`);
    out[key.slice(2)] = argv[++i];
  }
  return out;
}

function fail(message) {
  console.error(`stack: ${message}`);
  process.exit(2);
}

function need(name) {
  const value = process.env[name];
  if (!value) fail(`${name} is not set: run eval "$(scripts/services.sh start)" first`);
  return value;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function createVhost(amqpUrl, adminUrl) {
  const admin = new URL(adminUrl);
  const auth = `Basic ${Buffer.from(`${decodeURIComponent(admin.username)}:${decodeURIComponent(admin.password)}`).toString('base64')}`;
  const base = `${admin.protocol}//${admin.host}`;
  const vhost = `dashboard-${randomUUID()}`;
  const put = async (p, body) => {
    const answer = await fetch(`${base}${p}`, {
      method: 'PUT',
      headers: { authorization: auth, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    }).catch((err) => fail(`cannot reach the RabbitMQ admin API at ${base}: ${err.message}`));
    if (!answer.ok) fail(`RabbitMQ admin API ${p}: ${answer.status} ${await answer.text()}`);
  };
  await put(`/api/vhosts/${encodeURIComponent(vhost)}`, {});
  await put(`/api/permissions/${encodeURIComponent(vhost)}/${encodeURIComponent(decodeURIComponent(admin.username))}`, {
    configure: '.*',
    write: '.*',
    read: '.*',
  });
  const root = amqpUrl.replace(/\/(%2f|%2F)?$/, '');
  return { url: `${root}/${encodeURIComponent(vhost)}`, drop: () => fetch(`${base}/api/vhosts/${encodeURIComponent(vhost)}`, { method: 'DELETE', headers: { authorization: auth } }).catch(() => undefined) };
}

async function waitReady(name, url, child, log, seconds = 60) {
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) fail(`${name} exited with ${child.exitCode}; its log:\n${fs.readFileSync(log, 'utf8').slice(-3000)}`);
    try {
      const answer = await fetch(`${url}/readyz`);
      if (answer.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  fail(`${name} was not ready at ${url}/readyz within ${seconds}s; see ${log}`);
}

export async function startStack(options) {
  const binDir = options['bin-dir'] ?? process.env.EDGEWATCH_BIN_DIR ?? fail('--bin-dir (the cargo target dir\'s debug/) is required');
  const staticDir = path.resolve(options['static-dir'] ?? path.join(here, '..', 'dist'));
  if (!fs.existsSync(path.join(staticDir, 'index.html'))) fail(`${staticDir}/index.html is missing: run scripts/build-dashboard.sh`);
  for (const bin of ['edgewatch-signing', 'edgewatch-devices', 'edgewatch-monitoring']) {
    if (!fs.existsSync(path.join(binDir, bin))) fail(`${path.join(binDir, bin)} is missing: cargo build -p ${bin}`);
  }
  const mqtt = new URL(need('EDGEWATCH_TEST_MQTT_URL'));
  const bus = await createVhost(need('EDGEWATCH_TEST_AMQP_URL'), need('EDGEWATCH_TEST_AMQP_ADMIN_URL'));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgewatch-dashboard-stack-'));
  const serviceToken = randomBytes(24).toString('hex');
  const [signingPort, devicesPort, monitoringPort] = [await freePort(), await freePort(), await freePort()];
  const gatewayPort = options.port ? Number(options.port) : await freePort();
  const baseUrl = `http://127.0.0.1:${gatewayPort}`;
  const signingUrl = `http://127.0.0.1:${signingPort}`;
  const devicesUrl = `http://127.0.0.1:${devicesPort}`;
  const monitoringUrl = `http://127.0.0.1:${monitoringPort}`;
  const children = [];

  const start = (name, env) => {
    const log = path.join(dir, `${name}.log`);
    const out = fs.openSync(log, 'a');
    const child = spawn(path.join(binDir, `edgewatch-${name}`), [], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, EDGEWATCH_LOG__FORMAT: 'json', ...env },
      stdio: ['ignore', out, out],
    });
    children.push(child);
    return { child, log };
  };

  const signing = start('signing', {
    EDGEWATCH_HTTP__LISTEN: `127.0.0.1:${signingPort}`,
    EDGEWATCH_DATABASE_URL: `sqlite://${dir}/signing.db`,
    EDGEWATCH_CACHE_URL: 'memory://',
    EDGEWATCH_KEYS_DIR: `${dir}/keys`,
    EDGEWATCH_SERVICE_TOKEN: serviceToken,
    // The browser test signs in repeatedly from one address.
    EDGEWATCH_LOGIN_PER_IP: '10000',
    EDGEWATCH_LOGIN_PER_ACCOUNT: '10000',
  });
  await waitReady('signing', signingUrl, signing.child, signing.log);
  const devices = start('devices', {
    EDGEWATCH_HTTP__LISTEN: `127.0.0.1:${devicesPort}`,
    EDGEWATCH_DATABASE_URL: `sqlite://${dir}/devices.db`,
    EDGEWATCH_BUS_URL: bus.url,
    EDGEWATCH_CACHE_URL: 'memory://',
    EDGEWATCH_SIGNING_URL: signingUrl,
    EDGEWATCH_SERVICE_TOKEN: serviceToken,
    EDGEWATCH_MQTT_URL: mqtt.href,
    EDGEWATCH_MQTT_INGEST: 'true',
    // The test Mosquitto is shared: a group and client id of our own keep other bridges'
    // shared subscriptions from taking our devices' messages.
    EDGEWATCH_MQTT_SHARE_GROUP: `dashboard-${randomUUID()}`,
    EDGEWATCH_MQTT_CLIENT_ID: `dashboard-${randomUUID()}`,
    EDGEWATCH_OFFLINE_AFTER_S: '30',
    EDGEWATCH_PUBLIC_MQTT_HOST: mqtt.hostname,
    EDGEWATCH_PUBLIC_MQTT_PORT: mqtt.port || '1883',
    EDGEWATCH_PUBLIC_HTTP_BASE_URL: baseUrl,
  });
  const monitoring = start('monitoring', {
    EDGEWATCH_HTTP__LISTEN: `127.0.0.1:${monitoringPort}`,
    EDGEWATCH_STORE_URL: `sqlite://${dir}/telemetry.db`,
    EDGEWATCH_BUS_URL: bus.url,
    EDGEWATCH_SIGNING_URL: signingUrl,
    EDGEWATCH_DEVICES_URL: devicesUrl,
    EDGEWATCH_SERVICE_TOKEN: serviceToken,
    EDGEWATCH_STATIC_DIR: staticDir,
  });
  await waitReady('devices', devicesUrl, devices.child, devices.log);
  await waitReady('monitoring', monitoringUrl, monitoring.child, monitoring.log);
  const gateway = await startGateway({
    port: gatewayPort,
    routes: {
      '/api/v1/auth/': signingUrl,
      '/.well-known/': signingUrl,
      '/api/v1/devices': devicesUrl,
      '/api/v1/telemetry/': monitoringUrl,
      '/api/v1/forecast/': monitoringUrl,
      '/api/v1/weather': monitoringUrl,
      '/socket.io/': monitoringUrl,
      '/': monitoringUrl,
    },
  });

  const email = `admin-${randomBytes(4).toString('hex')}@example.com`;
  const password = `pw-${randomBytes(12).toString('hex')}`;
  const registered = await fetch(`${baseUrl}/api/v1/auth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password, name: 'Admin' }),
  });
  if (registered.status !== 201) fail(`registering the admin: ${registered.status} ${await registered.text()}`);

  const state = { base_url: baseUrl, email, password, mqtt_url: mqtt.href, logs: dir };
  const stop = async () => {
    gateway.close();
    for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
    await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : null)));
    await bus.drop();
    // The databases and logs go too, unless asked to keep them for a look.
    if (!process.env.EDGEWATCH_KEEP_STACK) fs.rmSync(dir, { recursive: true, force: true });
  };
  return { state, stop };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const options = args();
  const { state, stop } = await startStack(options);
  if (options.state) fs.writeFileSync(options.state, JSON.stringify(state, null, 2));
  console.log(`edgewatch dev stack at ${state.base_url}`);
  console.log(`  sign in as ${state.email} / ${state.password}`);
  console.log(`  service logs in ${state.logs}`);
  let stopping = false;
  const quit = async () => {
    if (stopping) return;
    stopping = true;
    await stop();
    process.exit(0);
  };
  process.on('SIGINT', quit);
  process.on('SIGTERM', quit);
}
