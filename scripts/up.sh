#!/usr/bin/env bash
# The one command to try edgewatch: builds the dashboard when it is missing or out of date (needs
# Node.js 20 and npm), then builds and runs `edgewatch up` (needs Rust). Arguments go to
# `edgewatch up`; see `scripts/up.sh --help`.
set -euo pipefail
export PATH="$HOME/.cargo/bin:$PATH"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

command -v cargo >/dev/null || { echo "error: cargo is missing: install Rust from rustup.rs" >&2; exit 1; }
if command -v npm >/dev/null; then
  "$ROOT/scripts/build-dashboard.sh" >/dev/null
elif [ ! -f "$ROOT/dashboard/dist/index.html" ]; then
  echo "warning: npm is missing, so the dashboard is not built; the API still runs (install Node.js 20 and run again)" >&2
fi
echo "Building edgewatch (the first build takes a few minutes)..." >&2
cd "$ROOT"
exec cargo run --release --locked --quiet -- up "$@"
