#!/usr/bin/env bash
# The whole test suite, from a fresh clone on a Debian-like machine:
#   1. install and start the real services (scripts/services.sh),
#   2. check formatting and lints (clippy warnings are errors),
#   3. run every crate's tests against those services,
#   4. fuzz the protocol parsers briefly (scripts/fuzz.sh; EDGEWATCH_FUZZ_SECONDS, default 15),
#   5. validate the deployment artefacts, check dependencies (cargo-deny), build the arm64 .deb,
#   6. run the arm64 agent under qemu against a local cloud (packaging/build-arm.sh --run).
# Prints the time each phase took.
set -euo pipefail
# rustup's toolchain first: a distribution rustc (Debian's rustc-web, which packaging/build-arm.sh
# installs for cross builds) lacks the sanitizer runtimes the fuzz phase links. The Go tarball's
# location too, in case the caller's PATH lacks it.
export PATH="$HOME/.cargo/bin:$PATH:/usr/local/go/bin"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# Builds are reused across runs (and CI runs) when the cache directory is writable.
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
  if mkdir -p /var/cache/edgewatch/target 2>/dev/null && [ -w /var/cache/edgewatch/target ]; then
    export CARGO_TARGET_DIR=/var/cache/edgewatch/target
  else
    export CARGO_TARGET_DIR=$ROOT/target
  fi
fi
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

timings=()
phase() { # phase NAME COMMAND...
  local name=$1 start=$SECONDS
  shift
  echo "=== $name" >&2
  "$@"
  timings+=("$(printf '%-12s %4ss' "$name" $((SECONDS - start)))")
}
report() {
  echo "=== phase timings" >&2
  printf '  %s\n' "${timings[@]}" >&2
}
trap report EXIT

for tool in cargo cargo-clippy rustfmt; do
  command -v "$tool" >/dev/null || { echo "error: $tool is missing (rustup component add clippy rustfmt)" >&2; exit 1; }
done

start_services() {
  # A failing command substitution inside `eval` would not stop the run: check it first.
  local exports
  exports=$("$ROOT/scripts/services.sh" start) || { echo "error: the test services did not start (see above)" >&2; return 1; }
  eval "$exports"
}
phase services start_services
# The real Socket.IO client the monitoring tests drive. Node trusts the system's CA store (as
# curl and cargo do), so a registry behind a site certificate works without extra settings.
install_live_client() {
  command -v npm >/dev/null || { echo "error: npm is missing (apt-get install nodejs npm)" >&2; return 1; }
  NODE_OPTIONS="--use-openssl-ca ${NODE_OPTIONS:-}" \
    npm ci --no-audit --no-fund --prefix "$ROOT/cloud/monitoring/tests/live-client"
}
phase npm install_live_client
phase fmt cargo fmt --all --check
phase clippy cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
phase build cargo test --workspace --locked --no-run
run_tests() { cargo test --workspace --locked 2>&1 | tee "$CARGO_TARGET_DIR/test-output.log"; }
phase test run_tests
phase fuzz "$ROOT/scripts/fuzz.sh" "${EDGEWATCH_FUZZ_SECONDS:-15}"
# Packaging: compose/k8s/Grafana/Dockerfile validation offline, the dependency gate, and the
# arm64 .deb of the agent built and listed (tools cached under /var/cache/edgewatch/tools).
phase deploy "$ROOT/scripts/validate-deploy.sh"
phase deny "$ROOT/scripts/deny.sh"
phase deb "$ROOT/packaging/build-deb.sh" arm64
# That aarch64 agent under qemu-user against a local cloud: enroll, collect, upload, all stored.
phase qemu "$ROOT/packaging/build-arm.sh" --run

trap - EXIT
report
# One closing line for the whole suite (cargo prints one summary per test binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "edgewatch: %d passed, %d failed\n", p, f }' \
  "$CARGO_TARGET_DIR/test-output.log"
