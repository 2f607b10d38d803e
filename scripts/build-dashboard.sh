#!/usr/bin/env bash
# Builds the web dashboard into dashboard/dist (`npm ci`, then `npm run build`: type check and
# Vite). Idempotent and fast when nothing changed: a stamp holds the hash of the lock file and of
# the sources, and both steps are skipped while it matches. Needs Node 20.19+ and npm.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR="$ROOT/dashboard"
command -v npm >/dev/null || { echo "error: npm is missing (apt-get install nodejs npm)" >&2; exit 1; }
# Node trusts the system's CA store (as curl and cargo do), like scripts/test.sh.
export NODE_OPTIONS="--use-openssl-ca ${NODE_OPTIONS:-}"

hash_of() { (cd "$DIR" && find "$@" -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16); }

deps=$(hash_of package.json package-lock.json)
if [ "$(cat "$DIR/node_modules/.edgewatch-stamp" 2>/dev/null)" != "$deps" ]; then
  echo "dashboard: npm ci" >&2
  npm ci --no-audit --no-fund --prefix "$DIR" >&2
  echo "$deps" >"$DIR/node_modules/.edgewatch-stamp"
fi

sources=$(hash_of package-lock.json index.html vite.config.ts tsconfig.json src)
if [ "$(cat "$DIR/dist/.edgewatch-stamp" 2>/dev/null)" != "$sources" ] || [ ! -f "$DIR/dist/index.html" ]; then
  echo "dashboard: npm run build" >&2
  npm run build --prefix "$DIR" >&2
  echo "$sources" >"$DIR/dist/.edgewatch-stamp"
fi
echo "$DIR/dist"
