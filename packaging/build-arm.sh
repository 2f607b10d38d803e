#!/usr/bin/env bash
# Cross-builds the edge agent for 64-bit ARM (Raspberry Pi 3/4/5 with a 64-bit OS) on an x86_64
# Debian machine, with Debian's own Rust instead of rustup (whose other targets may be out of
# reach): rustc-web/cargo-web 1.96 ship the aarch64 standard library as a Debian package.
#
#   packaging/build-arm.sh            build target/debian-rustc/aarch64-unknown-linux-gnu/release/edgewatch-agent
#   packaging/build-arm.sh --install  first install what is missing (needs root)
#   packaging/build-arm.sh --smoke    then check it under qemu: version, the SQLite buffer
#                                     (single-threaded debug-fill, killed), status of that buffer
#   packaging/build-arm.sh --run      then run it under qemu against a local cloud (`edgewatch up`
#                                     built for this machine): enroll with a token, collect every
#                                     0.5 s and upload over MQTT for a few seconds, stop with
#                                     SIGTERM, and check that the cloud stored every reading the
#                                     agent saw acknowledged, once each
#
# qemu runs the binary with the cross toolchain's C library (`-L` and LD_LIBRARY_PATH below). Where
# arm64 is also a dpkg architecture (libstd-rust-web-dev:arm64 pulls in libc6:arm64), the loader
# from the cross package would otherwise find /lib/aarch64-linux-gnu/libc.so.6, a different glibc
# build, and the mismatched pair hangs in the first pthread_create.
#
# Users with Docker can use `cross build --release --target aarch64-unknown-linux-gnu -p
# edgewatch-agent` instead (Cross.toml at the root).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=aarch64-unknown-linux-gnu
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
# Debian's rustc builds into a directory of its own: its host artifacts (build scripts, proc
# macros) next to rustup's in one release/deps would break rustup's release builds (E0460).
ARM_TARGET_DIR=$TARGET_DIR/debian-rustc
INSTALL=0; RUN=0; SMOKE=0
for arg in "$@"; do
  case $arg in
    --install) INSTALL=1 ;;
    --run) RUN=1 ;;
    --smoke) SMOKE=1 ;;
    *) echo "usage: $0 [--install] [--smoke] [--run]" >&2; exit 2 ;;
  esac
done

if [ "$INSTALL" = 1 ]; then
  dpkg --add-architecture arm64
  apt-get update
  apt-get install -y rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu \
    libc6-dev-arm64-cross qemu-user-static
fi

# Debian's toolchain, not whatever rustup put first on PATH.
export RUSTC=/usr/bin/rustc
CARGO=/usr/bin/cargo
for tool in "$RUSTC" "$CARGO" aarch64-linux-gnu-gcc; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: run $0 --install" >&2; exit 1; }
done
[ -d /usr/lib/rustlib/$TARGET ] || { echo "libstd-rust-web-dev:arm64 is missing: run $0 --install" >&2; exit 1; }

export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc

(cd "$ROOT" && CARGO_TARGET_DIR=$ARM_TARGET_DIR "$CARGO" build --locked --release --target $TARGET \
  -p edgewatch-agent --bin edgewatch-agent)
BIN=$ARM_TARGET_DIR/$TARGET/release/edgewatch-agent
file "$BIN" 2>/dev/null || true
SIZE=$(stat -c %s "$BIN")
echo "built $BIN ($SIZE bytes)"
# The issue's footprint budget for the device binary; CI fails when a change outgrows it.
BUDGET=8000000
[ "$SIZE" -le "$BUDGET" ] || { echo "the aarch64 agent is $SIZE bytes, over its $BUDGET-byte budget" >&2; exit 1; }

CROSS_LIBC=/usr/aarch64-linux-gnu
QEMU_RUN=(qemu-aarch64-static -L "$CROSS_LIBC" -E "LD_LIBRARY_PATH=$CROSS_LIBC/lib" "$BIN")
if [ "$SMOKE" = 1 ] || [ "$RUN" = 1 ]; then
  if ! command -v qemu-aarch64-static >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "qemu-user-static is missing: run $0 --install" >&2; exit 1; }
    apt-get install -y qemu-user-static
  fi
fi

if [ "$SMOKE" = 1 ]; then
  SMOKE_DIR=$(mktemp -d)
  QEMU=("${QEMU_RUN[@]}" --data-dir "$SMOKE_DIR")
  "${QEMU[@]}" --version
  # Appends and acks into the bundled SQLite for two seconds, then SIGKILL.
  timeout -s KILL 2 "${QEMU[@]}" debug-fill --batch 20 --ack >/dev/null || [ $? = 137 ]
  "${QEMU[@]}" status
  pending=$("${QEMU[@]}" status --json | sed -n 's/.*"pending_readings": \([0-9]*\).*/\1/p')
  rm -rf "$SMOKE_DIR"
  [ "${pending:-0}" -ge 20 ] || { echo "the aarch64 buffer holds ${pending:-0} readings; expected some" >&2; exit 1; }
  echo "aarch64 smoke test passed: $pending readings in the buffer after kill -9"
fi

if [ "$RUN" = 1 ]; then
  WORK=$(mktemp -d)
  CLOUD_PID=
  cleanup() {
    [ -n "$CLOUD_PID" ] && kill "$CLOUD_PID" 2>/dev/null && wait "$CLOUD_PID" 2>/dev/null
    rm -rf "$WORK"
  }
  trap cleanup EXIT
  fail() { echo "aarch64 run: $*" >&2; exit 1; }
  json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

  # The local cloud: this machine's own build of `edgewatch up`, with rustup's toolchain.
  echo "building edgewatch (the local cloud) for this machine"
  (cd "$ROOT" && env -u RUSTC cargo build --locked -q -p edgewatch --bin edgewatch)
  EDGEWATCH_LOG__FILTER=warn "$TARGET_DIR/debug/edgewatch" up --data-dir "$WORK/cloud" \
    --http 127.0.0.1:0 --mqtt 127.0.0.1:0 --sim 0 --no-agent >"$WORK/up.log" 2>&1 &
  CLOUD_PID=$!
  for _ in $(seq 1 600); do
    grep -q '^Press Ctrl-C' "$WORK/up.log" && break
    kill -0 "$CLOUD_PID" 2>/dev/null || { cat "$WORK/up.log" >&2; fail "edgewatch up exited"; }
    sleep 0.1
  done
  URL=$(sed -n 's/^edgewatch is up: *//p' "$WORK/up.log")
  PASSWORD=$(sed -n 's/^ *administrator: admin@edgewatch.local \/ *//p' "$WORK/up.log")
  [ -n "$URL" ] && [ -n "$PASSWORD" ] || { cat "$WORK/up.log" >&2; fail "no banner from edgewatch up within 60 s"; }
  TOKEN=$(curl -sf "$URL/api/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"email\": \"admin@edgewatch.local\", \"password\": \"$PASSWORD\"}" | json '["access_token"]')
  ENROLL=$(curl -sf "$URL/api/v1/devices" -H "authorization: Bearer $TOKEN" \
    -H 'content-type: application/json' -d '{"name": "qemu-pi", "kind": "raspberry-pi", "tags": ["aarch64"]}' |
    json '["enrollment_token"]')

  QEMU=("${QEMU_RUN[@]}" --data-dir "$WORK/agent")
  "${QEMU[@]}" --version
  "${QEMU[@]}" enroll --server "$URL" --token "$ENROLL"
  DEVICE=$(json '["device_id"]' <"$WORK/agent/credentials.json")
  # A few collection cycles at 0.5 s, uploaded over MQTT, then a clean stop (SIGTERM).
  timeout -s TERM 8 "${QEMU[@]}" run --uplink mqtt --interval 0.5 || [ $? = 124 ]
  "${QEMU[@]}" status
  uploaded=$("${QEMU[@]}" status --json | json '["uploaded_readings"]')
  [ "$uploaded" -ge 3 ] || fail "the agent uploaded $uploaded readings; expected at least 3"

  # Every acknowledged reading is in the cloud's store, once: each carries mem.used_bytes.
  from=$(date -u -d '-10 min' +%Y-%m-%dT%H:%M:%S.000Z); to=$(date -u -d '+1 min' +%Y-%m-%dT%H:%M:%S.000Z)
  stored=0
  for _ in $(seq 1 100); do
    stored=$(curl -sf -H "authorization: Bearer $TOKEN" \
      "$URL/api/v1/telemetry/$DEVICE?metric=mem.used_bytes&from=$from&to=$to" | json '["points"].__len__()')
    [ "$stored" -ge "$uploaded" ] && break
    sleep 0.1
  done
  [ "$stored" = "$uploaded" ] || fail "the cloud stored $stored readings of the $uploaded the agent saw acknowledged"
  echo "aarch64 agent under qemu: $uploaded readings collected, acknowledged over MQTT and stored by the cloud"
fi
