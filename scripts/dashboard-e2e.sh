#!/usr/bin/env bash
# The dashboard's browser test: builds the dashboard and the services, starts the dev stack
# (dashboard/e2e/stack.mjs) on the test servers, and runs dashboard/e2e/e2e.mjs against it with
# a real edgewatch-agent and Debian's Chromium. Prints the screenshot folder and
# FLEET_PAGE_LOAD_MS. Expects the servers of scripts/services.sh (started here when missing).
# Extra arguments go to e2e.mjs (e.g. --fleet-size 0 to skip the 1,000-device measurement).
#
# Against another deployment (e.g. `edgewatch up`), run e2e.mjs directly:
#   node dashboard/e2e/e2e.mjs --base-url URL --email E --password P --agent PATH
set -euo pipefail
export PATH="$HOME/.cargo/bin:$PATH"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
command -v chromium >/dev/null || [ -x /usr/bin/chromium ] ||
  { echo "error: chromium is missing (scripts/services.sh start installs it, or apt-get install chromium)" >&2; exit 1; }
if [ -z "${EDGEWATCH_TEST_AMQP_URL:-}" ]; then
  exports=$("$ROOT/scripts/services.sh" start) || { echo "error: the test services did not start" >&2; exit 1; }
  eval "$exports"
fi
cargo build -q -p edgewatch-signing -p edgewatch-devices -p edgewatch-monitoring -p edgewatch-agent
bin_dir="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
dist=$("$ROOT/scripts/build-dashboard.sh")

work=$(mktemp -d)
node "$ROOT/dashboard/e2e/stack.mjs" --bin-dir "$bin_dir" --static-dir "$dist" --state "$work/state.json" \
  >"$work/stack.out" 2>&1 &
stack=$!
cleanup() {
  kill -TERM "$stack" 2>/dev/null && wait "$stack" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 600); do
  [ -s "$work/state.json" ] && break
  kill -0 "$stack" 2>/dev/null || { cat "$work/stack.out" >&2; echo "error: the dev stack did not start" >&2; exit 1; }
  sleep 0.2
done
[ -s "$work/state.json" ] || { cat "$work/stack.out" >&2; echo "error: the dev stack did not start within 120 s" >&2; exit 1; }
status=0
node "$ROOT/dashboard/e2e/e2e.mjs" --state "$work/state.json" --agent "$bin_dir/edgewatch-agent" "$@" || status=$?
if [ $status -ne 0 ]; then
  echo "--- dev stack output" >&2
  cat "$work/stack.out" >&2
  logs=$(sed -n 's/.*"logs": "\(.*\)".*/\1/p' "$work/state.json")
  for f in "$logs"/*.log; do echo "--- $f (last 40 lines)" >&2; tail -n 40 "$f" >&2; done
fi
exit $status
