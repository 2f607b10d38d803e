#!/usr/bin/env bash
# Broker benchmark: the edgewatch broker (authorising front + rumqttd, auth on) against a private
# Debian Mosquitto (auth on, password file), side by side in one run on this machine.
#
#   scripts/broker-bench.sh            # RUNS=3 DURATION=10 PUBLISHERS=100 IDLE=1000 RATE=50
#   BIN=path/to/bin scripts/broker-bench.sh   # use already built binaries
#
# First the resident memory each broker adds for IDLE idle connections, on fresh brokers. Then,
# per run and broker: QoS 1, 64-byte payloads, PUBLISHERS publishers -> 1 subscriber, flat out
# (throughput: delivered messages/s and the share of sent messages delivered), then at RATE
# messages/s per publisher (p99 latency below saturation). Prints every run and a Markdown table
# of the medians.
set -euo pipefail

RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
PUBLISHERS=${PUBLISHERS:-100}
IDLE=${IDLE:-1000}
RATE=${RATE:-50}

cd "$(dirname "$0")/.."
command -v mosquitto >/dev/null && command -v mosquitto_passwd >/dev/null || {
  echo "broker-bench: needs mosquitto (Debian package mosquitto); scripts/services.sh installs it" >&2
  exit 1
}
if [ -z "${BIN:-}" ]; then
  echo "Building release binaries (edgewatch-broker, edgewatch-sim)..." >&2
  cargo build --release -q -p edgewatch-broker -p edgewatch-simulator
  BIN="${CARGO_TARGET_DIR:-target}/release"
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "broker-bench: nothing listens on port $1" >&2
  exit 1
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# Each idle connection costs the front two sockets (client + rumqttd side) and rumqttd one.
ulimit -n "$(ulimit -Hn)" || true

ours_port=$(free_port)
cat >"$work/broker.toml" <<EOF
role = "edge"
[mqtt]
listen = "127.0.0.1:$ours_port"
[http]
listen = "127.0.0.1:$(free_port)"
[[accounts]]
username = "bench"
password = "bench-pw"
role = "custom"
publish = ["bench/#"]
subscribe = ["bench/#"]
EOF
"$BIN/edgewatch-broker" --config "$work/broker.toml" >"$work/broker.log" 2>&1 &
ours_pid=$!
pids+=("$ours_pid")

mosq_port=$(free_port)
mosquitto_passwd -b -c "$work/passwd" bench bench-pw 2>/dev/null
chmod 600 "$work/passwd"
cat >"$work/mosquitto.conf" <<EOF
listener $mosq_port 127.0.0.1
allow_anonymous false
password_file $work/passwd
persistence false
# Run as root, mosquitto switches to user mosquitto, who cannot read this private directory.
user $(id -un)
# Mosquitto drops QoS 1 messages for a subscriber beyond 1000 queued; rumqttd does not.
max_queued_messages 1000000
log_dest none
EOF
mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
mosq_pid=$!
pids+=("$mosq_pid")
wait_port "$ours_port"
wait_port "$mosq_port"

load() { # broker-port extra-args...
  local port=$1
  shift
  "$BIN/edgewatch-sim" load --broker "mqtt://127.0.0.1:$port" --username bench --password bench-pw \
    --publishers "$PUBLISHERS" --payload-bytes 64 --qos 1 --duration-s "$DURATION" "$@" 2>/dev/null
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p; s/^$1=\([^ ]*\).*/\1/p" | head -1; }

results="$work/results"
: >"$results"
# Idle connections first, on fresh brokers: the load runs leave queues and logs behind.
for broker in edgewatch mosquitto; do
  pid=$ours_pid
  [ "$broker" = mosquitto ] && pid=$mosq_pid
  port=$ours_port
  [ "$broker" = mosquitto ] && port=$mosq_port
  before=$(rss_kb "$pid")
  "$BIN/edgewatch-sim" idle --broker "mqtt://127.0.0.1:$port" --username bench --password bench-pw \
    -n "$IDLE" --hold-s 600 >"$work/idle-$broker.out" 2>/dev/null &
  idle_pid=$!
  for _ in $(seq 1 1200); do grep -q connected= "$work/idle-$broker.out" && break; sleep 0.05; done
  sleep 1
  after=$(rss_kb "$pid")
  echo "$broker idle: $(cat "$work/idle-$broker.out") rss_before_kb=$before rss_after_kb=$after" >&2
  echo "$broker idle_mb_per_1000 $(python3 -c "print(round(($after-$before)/1024*1000/$IDLE, 1))")" >>"$results"
  echo "$broker rss_mb $(python3 -c "print(round($after/1024, 1))")" >>"$results"
  kill "$idle_pid" 2>/dev/null || true
  wait "$idle_pid" 2>/dev/null || true
done

for run in $(seq 1 "$RUNS"); do
  for broker in edgewatch mosquitto; do
    port=$ours_port
    [ "$broker" = mosquitto ] && port=$mosq_port
    flat=$(load "$port")
    paced=$(load "$port" --rate "$RATE")
    echo "run $run $broker flat-out: $flat" >&2
    echo "run $run $broker ${RATE}/s each: $paced" >&2
    echo "$broker flat_rate $(echo "$flat" | field delivered_per_s)" >>"$results"
    echo "$broker flat_delivered_pct $(python3 -c "print(100*$(echo "$flat" | field delivered)/max(1,$(echo "$flat" | field sent)))")" >>"$results"
    echo "$broker flat_p99 $(echo "$flat" | field p99_ms)" >>"$results"
    echo "$broker paced_rate $(echo "$paced" | field delivered_per_s)" >>"$results"
    echo "$broker paced_p99 $(echo "$paced" | field p99_ms)" >>"$results"
  done
done

python3 - "$results" "$PUBLISHERS" "$RATE" "$IDLE" "$RUNS" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    broker, key, value = line.split()
    try:
        rows.setdefault((broker, key), []).append(float(value))
    except ValueError:
        pass
med = lambda b, k: statistics.median(rows.get((b, k), [float("nan")]))
pubs, rate, idle, runs = sys.argv[2:]
print(f"\n| QoS 1, 64 B, {pubs} publishers -> 1 subscriber (median of {runs}) | edgewatch broker (auth on) | Mosquitto 2.0 (auth on) | ratio |")
print("|---|---|---|---|")
for key, label, fmt in [
    ("flat_rate", "flat out: delivered msg/s", "{:.0f}"),
    ("flat_delivered_pct", "flat out: share of sent messages delivered, %", "{:.1f}"),
    ("flat_p99", "flat out: p99 latency ms (queueing at saturation)", "{:.0f}"),
    ("paced_rate", f"{rate} msg/s per publisher: delivered msg/s", "{:.0f}"),
    ("paced_p99", f"{rate} msg/s per publisher: p99 latency ms", "{:.2f}"),
    ("idle_mb_per_1000", f"RSS added by 1,000 idle connections, MB (measured with {idle})", "{:.1f}"),
    ("rss_mb", "RSS with the idle connections, MB", "{:.1f}"),
]:
    a, b = med("edgewatch", key), med("mosquitto", key)
    print(f"| {label} | {fmt.format(a)} | {fmt.format(b)} | {a / b:.2f} |")
PY
