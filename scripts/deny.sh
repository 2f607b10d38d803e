#!/usr/bin/env bash
# The dependency gate: `cargo deny check licenses bans sources` with deny.toml, offline (the lock
# file and the local registry cache are all it reads). Builds download only the crates of this
# machine's targets; cargo-deny reads the manifests of every crate in the lock file (windows-sys
# and the like too), so `cargo fetch` brings the rest into the cache first. cargo-deny is installed once with
# `cargo install --locked` into $EDGEWATCH_CACHE_DIR/tools (default /var/cache/edgewatch/tools).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=${EDGEWATCH_CACHE_DIR:-/var/cache/edgewatch}/tools
CARGO_DENY_VERSION=0.20.2
export PATH="$TOOLS/bin:$HOME/.cargo/bin:$PATH"
if ! cargo-deny --version 2>/dev/null | grep -q "$CARGO_DENY_VERSION"; then
  echo "installing cargo-deny $CARGO_DENY_VERSION into $TOOLS (first time only)" >&2
  mkdir -p "$TOOLS"
  cargo install --locked --quiet cargo-deny --version "$CARGO_DENY_VERSION" --root "$TOOLS"
fi
cd "$ROOT"
cargo fetch --locked --quiet
cargo deny --offline --locked check licenses bans sources
