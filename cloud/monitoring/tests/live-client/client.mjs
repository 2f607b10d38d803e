// A Socket.IO client for the monitoring tests: connects to namespace /live with a token, runs
// the commands it reads on stdin (one JSON per line: {"emit": event, "data": {...}}) and prints
// one JSON line per thing that happens (connect, connect_error, ack, telemetry, status).
// Usage: node client.mjs BASE_URL TOKEN
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const [base, token] = process.argv.slice(2);
const out = (record) => process.stdout.write(JSON.stringify(record) + "\n");
const socket = io(`${base}/live`, {
  path: "/socket.io/",
  auth: { token },
  transports: ["websocket"],
  reconnection: false,
});
socket.on("connect", () => out({ kind: "connect" }));
socket.on("connect_error", (err) => out({ kind: "connect_error", message: err.message }));
socket.on("telemetry", (data) => out({ kind: "telemetry", data, at: Date.now() }));
socket.on("status", (data) => out({ kind: "status", data }));
createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line);
  socket.timeout(5000).emit(command.emit, command.data, (err, ack) =>
    out({ kind: "ack", emit: command.emit, ack: err ? { error: String(err) } : ack }),
  );
});
process.stdin.on("end", () => socket.close());
