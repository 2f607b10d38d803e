#!/usr/bin/env bash
# Memory of `edgewatch up` through a burst of sign-ins (issue 16, docs/benchmarks.md): resident
# memory fresh, its peak, and 5 s after LOGINS sign-ins made AT_ONCE at a time. Each sign-in runs
# one argon2id hash of 19 MiB. Loopback only; stops `up` when done.
#
#   scripts/login-memory.sh [BINARY] [LOGINS] [AT_ONCE]
#   defaults: $CARGO_TARGET_DIR/release/edgewatch (or target/release/edgewatch), 20, 5
#
# Sign-in rate limits (10 per account, 30 per address a minute) are kept: the logins are spread
# over the administrator and three registered accounts.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${1:-${CARGO_TARGET_DIR:-$ROOT/target}/release/edgewatch}
LOGINS=${2:-20}
AT_ONCE=${3:-5}
[ -x "$BIN" ] || { echo "error: no binary at $BIN (cargo build --release first, or pass its path)" >&2; exit 1; }

data=$(mktemp -d)
"$BIN" up --data-dir "$data" --http 127.0.0.1:0 --mqtt 127.0.0.1:0 --sim 0 --no-agent \
  >"$data/stdout" 2>"$data/stderr" &
pid=$!
cleanup() { kill -INT "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT
for _ in $(seq 600); do
  grep -q '^Press Ctrl-C' "$data/stdout" && break
  kill -0 "$pid" 2>/dev/null || { cat "$data/stderr" >&2; echo "error: edgewatch up exited" >&2; exit 1; }
  sleep 0.1
done
url=$(sed -n 's/^edgewatch is up: *//p' "$data/stdout" | tr -d '[:space:]')
password=$(sed -n 's|^ *administrator: admin@edgewatch.local / *||p' "$data/stdout" | tr -d '[:space:]')
[ -n "$url" ] && [ -n "$password" ] || { echo "error: no URL or password in the banner" >&2; exit 1; }

mib() { awk -v key="$1:" '$1 == key { printf "%.1f", $2 / 1024 }' "/proc/$pid/status"; }
post() { # post PATH BODY -> HTTP status
  curl -sS -o /dev/null -w '%{http_code}\n' -H 'content-type: application/json' -d "$2" "$url$1"
}

sleep 2
fresh=$(mib VmRSS)
accounts=("admin@edgewatch.local $password")
for i in 1 2 3; do
  pass="memory test password $i"
  [ "$(post /api/v1/auth/register "{\"email\":\"user$i@example.com\",\"password\":\"$pass\"}")" = 201 ] \
    || { echo "error: registration $i failed" >&2; exit 1; }
  accounts+=("user$i@example.com $pass")
done
bodies=$data/bodies
for i in $(seq 0 $((LOGINS - 1))); do
  read -r email pass <<<"${accounts[i % 4]}"
  echo "{\"email\":\"$email\",\"password\":\"$pass\"}"
done >"$bodies"
export url
statuses=$(tr '\n' '\0' <"$bodies" | xargs -0 -P "$AT_ONCE" -I{} \
  curl -sS -o /dev/null -w '%{http_code}\n' -H 'content-type: application/json' -d {} "$url/api/v1/auth/login")
ok=$(grep -c '^200$' <<<"$statuses" || true)
[ "$ok" = "$LOGINS" ] || { echo "error: $ok of $LOGINS sign-ins answered 200: $(sort <<<"$statuses" | uniq -c | tr '\n' ' ')" >&2; exit 1; }
after=$(mib VmRSS)
sleep 5
settled=$(mib VmRSS)
printf 'binary=%s logins=%d at_once=%d fresh_mib=%s peak_mib=%s after_mib=%s settled_5s_mib=%s\n' \
  "$(basename "$BIN")" "$LOGINS" "$AT_ONCE" "$fresh" "$(mib VmHWM)" "$after" "$settled"
