#!/usr/bin/env bash
# Fuzzes the protocol parsers with cargo-fuzz (libFuzzer + AddressSanitizer).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     default: 60 seconds each for `batch` and `mqtt`
#
# cargo-fuzz wants a nightly compiler for its -Z flags; the stable toolchain ships the sanitizer
# runtimes, so RUSTC_BOOTSTRAP=1 lets it run on stable. Crashes land in protocol/fuzz/artifacts/.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECONDS_EACH=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(batch mqtt)

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${EDGEWATCH_FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/fuzz}
cd "$ROOT/protocol/fuzz"
for target in "${TARGETS[@]}"; do
  mkdir -p "corpus/$target"
  echo "[fuzz] $target for ${SECONDS_EACH}s" >&2
  log="$CARGO_TARGET_DIR/fuzz-$target.log"
  mkdir -p "$CARGO_TARGET_DIR"
  status=0
  cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$SECONDS_EACH" -max_len=65536 -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E 'stat::number_of_executed_units|stat::peak_rss_mb|ERROR|panicked|SUMMARY' "$log" >&2 || true
  if [ "$status" -ne 0 ]; then
    echo "[fuzz] $target FAILED (exit $status); input in protocol/fuzz/artifacts/$target, log $log" >&2
    exit 1
  fi
done
echo "[fuzz] clean" >&2
