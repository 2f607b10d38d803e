// A tiny gateway for development and the browser test: one origin in front of the services,
// routing by path prefix exactly like API.md's gateway table (nginx in the distributed shape,
// built into `edgewatch up`). WebSocket upgrades (Socket.IO) are piped through. No dependencies.

import http from 'node:http';
import net from 'node:net';

/**
 * Starts the gateway. `routes` maps a path prefix to a base URL (`http://127.0.0.1:PORT`); the
 * longest matching prefix wins. Resolves to the listening server.
 */
export function startGateway({ port = 0, host = '127.0.0.1', routes }) {
  const table = Object.entries(routes).sort((a, b) => b[0].length - a[0].length);
  const pick = (url) => {
    const path = url.split('?')[0];
    const hit = table.find(([prefix]) => path === prefix || path.startsWith(prefix));
    return hit ? new URL(hit[1]) : null;
  };
  const server = http.createServer((req, res) => {
    const target = pick(req.url);
    if (!target) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'not_found', message: 'no service serves this path' } }));
      return;
    }
    const upstream = http.request(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, 'x-forwarded-for': req.socket.remoteAddress ?? '' },
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', (err) => {
      if (res.headersSent) return res.destroy();
      res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' });
      res.end(JSON.stringify({ error: { code: 'unavailable', message: `the service is down: ${err.message}` } }));
    });
    req.pipe(upstream);
  });
  server.on('upgrade', (req, socket, head) => {
    const target = pick(req.url);
    if (!target) return socket.destroy();
    const upstream = net.connect(Number(target.port), target.hostname, () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head?.length) upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    const close = () => {
      upstream.destroy();
      socket.destroy();
    };
    upstream.on('error', close);
    socket.on('error', close);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
