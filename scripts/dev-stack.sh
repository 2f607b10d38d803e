#!/usr/bin/env bash
# Runs the services as separate processes behind one origin, for working on the dashboard:
# signing, devices and monitoring on loopback against the test servers (scripts/services.sh),
# a gateway that routes like API.md's table, and monitoring serving dashboard/dist. Prints the
# URL and the admin account it registered; Ctrl-C stops everything.
#
#   scripts/dev-stack.sh [--port 8080] [--state FILE]
#
# For live reload of the front end, run `EDGEWATCH_BASE_URL=<printed URL> npm run dev` in
# dashboard/ as well: Vite's dev server proxies the API and Socket.IO to the stack.
set -euo pipefail
export PATH="$HOME/.cargo/bin:$PATH"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
if [ -z "${EDGEWATCH_TEST_AMQP_URL:-}" ]; then
  exports=$("$ROOT/scripts/services.sh" start) || { echo "error: the test services did not start" >&2; exit 1; }
  eval "$exports"
fi
cargo build -q -p edgewatch-signing -p edgewatch-devices -p edgewatch-monitoring -p edgewatch-agent
bin_dir="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
dist=$("$ROOT/scripts/build-dashboard.sh")
exec node "$ROOT/dashboard/e2e/stack.mjs" --bin-dir "$bin_dir" --static-dir "$dist" "$@"
