#!/usr/bin/env bash
# Cross-builds the edge agent for 64-bit ARM (Raspberry Pi 3/4/5 with a 64-bit OS) on an x86_64
# Debian machine, with Debian's own Rust instead of rustup (whose other targets may be out of
# reach): rustc-web/cargo-web 1.96 ship the aarch64 standard library as a Debian package.
#
#   packaging/build-arm.sh            build target/aarch64-unknown-linux-gnu/release/edgewatch-agent
#   packaging/build-arm.sh --install  first install what is missing (needs root)
#   packaging/build-arm.sh --smoke    then check it under qemu: version, the SQLite buffer
#                                     (single-threaded debug-fill, killed), status of that buffer
#   packaging/build-arm.sh --run      then run the agent under qemu for a few collection cycles,
#                                     uploading over MQTT (needs scripts/services.sh's Mosquitto)
#
# Note: on the development machine qemu-user 7.2 (Debian 12) hangs in every pthread_create (a
# two-line C program does too), so --run cannot pass there; --smoke does.
#
# Users with Docker can use `cross build --release --target aarch64-unknown-linux-gnu -p
# edgewatch-agent` instead (Cross.toml at the root).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=aarch64-unknown-linux-gnu
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
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

(cd "$ROOT" && "$CARGO" build --locked --release --target $TARGET -p edgewatch-agent --bin edgewatch-agent)
BIN=$TARGET_DIR/$TARGET/release/edgewatch-agent
file "$BIN" 2>/dev/null || true
echo "built $BIN ($(stat -c %s "$BIN") bytes)"

if [ "$SMOKE" = 1 ]; then
  command -v qemu-aarch64-static >/dev/null || { echo "qemu-user-static is missing: run $0 --install" >&2; exit 1; }
  SMOKE_DIR=$(mktemp -d)
  QEMU=(qemu-aarch64-static -L /usr/aarch64-linux-gnu "$BIN" --data-dir "$SMOKE_DIR")
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
  command -v qemu-aarch64-static >/dev/null || { echo "qemu-user-static is missing: run $0 --install" >&2; exit 1; }
  : "${EDGEWATCH_TEST_MQTT_URL:?--run needs a broker: eval \"\$(scripts/services.sh start)\" first}"
  DATA=$(mktemp -d)
  trap 'rm -rf "$DATA"' EXIT
  QEMU=(qemu-aarch64-static -L /usr/aarch64-linux-gnu "$BIN" --data-dir "$DATA")
  "${QEMU[@]}" --version
  broker=${EDGEWATCH_TEST_MQTT_URL#*://}; broker=${broker%/}
  # A device credential for the test Mosquitto, which accepts any.
  cat >"$DATA/credentials.json" <<JSON
{"device_id": "$(cat /proc/sys/kernel/random/uuid)", "device_secret": "qemu-run",
 "server": "http://127.0.0.1:9", "http_base_url": "http://127.0.0.1:9",
 "mqtt": {"host": "${broker%:*}", "port": ${broker##*:}, "tls": false},
 "enrolled_at": "2026-11-27T00:00:00.000Z"}
JSON
  chmod 600 "$DATA/credentials.json"
  # A few collection cycles at 0.5 s, uploaded over MQTT, then a clean stop (SIGTERM).
  timeout -s TERM 4 "${QEMU[@]}" run --uplink mqtt --interval 0.5 || [ $? = 124 ]
  "${QEMU[@]}" status
  uploaded=$("${QEMU[@]}" status --json | sed -n 's/.*"uploaded_readings": \([0-9]*\).*/\1/p')
  [ "${uploaded:-0}" -ge 3 ] || { echo "the aarch64 agent uploaded ${uploaded:-0} readings; expected at least 3" >&2; exit 1; }
  echo "aarch64 agent under qemu: $uploaded readings collected and acknowledged over MQTT"
fi
