#!/usr/bin/env bash
# Runs every crate's tests with the wall clock moved ahead (default 400 days), to prove that no
# test depends on today's date (docs/testing.md). The test binaries are built on the real clock
# first (cargo's freshness checks read file times); then they run under libfaketime, which moves
# the wall clock of every process they start (edgewatch up, the agent) while monotonic clocks,
# and so every timeout and sleep, stay real. The test servers run on the real clock: nothing of
# ours asks them for the time.
#
#   scripts/test-future.sh [OFFSET] [cargo test arguments...]     e.g. +400d, +3y
set -euo pipefail
export PATH="$HOME/.cargo/bin:$PATH:/usr/local/go/bin"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OFFSET=${1:-+400d}
shift || true

LIB=$(find /usr/lib -name 'libfaketime.so.1' -path '*faketime*' 2>/dev/null | head -n1 || true)
if [ -z "$LIB" ]; then
  echo "installing libfaketime (Debian package faketime)" >&2
  apt-get install -y -qq faketime >/dev/null || { apt-get update -qq && apt-get install -y -qq faketime >/dev/null; }
  LIB=$(find /usr/lib -name 'libfaketime.so.1' -path '*faketime*' | head -n1)
fi
[ -n "$LIB" ] || { echo "error: libfaketime not found after installing faketime" >&2; exit 1; }

if [ -z "${EDGEWATCH_TEST_POSTGRES_URL:-}" ]; then
  exports=$("$ROOT/scripts/services.sh" start) || { echo "error: the test services did not start" >&2; exit 1; }
  eval "$exports"
fi
npm ci --no-audit --no-fund --prefix "$ROOT/cloud/monitoring/tests/live-client" >/dev/null

cargo test --workspace --locked --no-run "$@"
echo "running the tests with the clock at $(FAKETIME="$OFFSET" LD_PRELOAD="$LIB" date -u +%FT%TZ)" >&2
# Chromium hangs at start under libfaketime, so the browser (the dashboard's end-to-end test)
# keeps the real clock; every other process is moved.
FAKETIME="$OFFSET" FAKETIME_DONT_FAKE_MONOTONIC=1 FAKETIME_SKIP_CMDS=chromium,chrome_crashpad_handler \
  LD_PRELOAD="$LIB" cargo test --workspace --locked --no-fail-fast "$@"
