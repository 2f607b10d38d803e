#!/usr/bin/env bash
# Footprint of the edge agent next to Prometheus' node_exporter, side by side on this machine at
# the same 1 s interval (docs/benchmarks.md, "Edge agent").
#
#   eval "$(scripts/services.sh start)"; scripts/agent-footprint.sh [SECONDS]
#
# The agent runs `run --uplink mqtt --interval 1` against the test Mosquitto (which accepts any
# device credential); node_exporter is scraped once a second, as a 1 s Prometheus job would.
# CPU is utime+stime from /proc/PID/stat over the measured window; RSS is sampled every second.
set -euo pipefail

DURATION=${1:-60}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
: "${EDGEWATCH_TEST_MQTT_URL:?run eval \"\$(scripts/services.sh start)\" first: the agent needs the test Mosquitto}"
NODE_EXPORTER=$(command -v prometheus-node-exporter || true)
[ -n "$NODE_EXPORTER" ] || { echo "prometheus-node-exporter is missing: apt-get install -y prometheus-node-exporter" >&2; exit 1; }
NE_PORT=${NE_PORT:-19100}

(cd "$ROOT" && cargo build --release -p edgewatch-agent --bin edgewatch-agent >&2)
AGENT_BIN=$TARGET/release/edgewatch-agent

WORK=$(mktemp -d)
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

broker=${EDGEWATCH_TEST_MQTT_URL#*://}
broker=${broker%/}
cat >"$WORK/credentials.json" <<JSON
{"device_id": "$(cat /proc/sys/kernel/random/uuid)", "device_secret": "footprint-run",
 "server": "http://127.0.0.1:9", "http_base_url": "http://127.0.0.1:9",
 "mqtt": {"host": "${broker%:*}", "port": ${broker##*:}, "tls": false},
 "enrolled_at": "2026-11-27T00:00:00.000Z"}
JSON
chmod 600 "$WORK/credentials.json"

"$AGENT_BIN" --data-dir "$WORK" run --uplink mqtt --interval 1 2>"$WORK/agent.log" &
AGENT=$!; PIDS+=("$AGENT")
"$NODE_EXPORTER" --web.listen-address="127.0.0.1:$NE_PORT" 2>"$WORK/node_exporter.log" &
NE=$!; PIDS+=("$NE")
(while sleep 1; do curl -s -o /dev/null "http://127.0.0.1:$NE_PORT/metrics"; done) &
PIDS+=("$!")

sleep 5 # warm-up: first collections, MQTT connect, first scrapes
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)
a0=$(ticks "$AGENT"); n0=$(ticks "$NE"); t0=$(date +%s.%N)
a_sum=0; a_max=0; n_sum=0; n_max=0; samples=0
for _ in $(seq "$DURATION"); do
  sleep 1
  a=$(rss_kib "$AGENT"); n=$(rss_kib "$NE")
  a_sum=$((a_sum + a)); n_sum=$((n_sum + n)); samples=$((samples + 1))
  if [ "$a" -gt "$a_max" ]; then a_max=$a; fi
  if [ "$n" -gt "$n_max" ]; then n_max=$n; fi
done
a1=$(ticks "$AGENT"); n1=$(ticks "$NE"); t1=$(date +%s.%N)

"$AGENT_BIN" --data-dir "$WORK" status >"$WORK/status.txt"
size=$(stat -c %s "$AGENT_BIN")
awk -v a0="$a0" -v a1="$a1" -v n0="$n0" -v n1="$n1" -v t0="$t0" -v t1="$t1" -v hz="$hz" \
    -v as="$a_sum" -v am="$a_max" -v ns="$n_sum" -v nm="$n_max" -v s="$samples" -v size="$size" 'BEGIN {
  el = t1 - t0
  printf "window: %.1f s, 1 s interval, %d RSS samples\n", el, s
  printf "| process | CPU (%% of one core) | RSS mean | RSS max |\n|---|---|---|---|\n"
  printf "| edgewatch-agent run --uplink mqtt --interval 1 | %.2f %% | %.1f MiB | %.1f MiB |\n", (a1 - a0) / hz / el * 100, as / s / 1024, am / 1024
  printf "| prometheus-node-exporter, scraped every 1 s | %.2f %% | %.1f MiB | %.1f MiB |\n", (n1 - n0) / hz / el * 100, ns / s / 1024, nm / 1024
  printf "agent binary (x86_64 release, stripped): %.1f MiB\n", size / 1048576
}'
echo "agent status after the run:"
grep -E "link|pending|uploaded|next seq" "$WORK/status.txt"
