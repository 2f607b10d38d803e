#!/usr/bin/env bash
# Real backing services for the test suite, on loopback, with throwaway data directories.
#
#   scripts/services.sh start   install what is missing, start what is not running, wait until
#                               each answers, print `export EDGEWATCH_TEST_*=...` lines on stdout
#   scripts/services.sh env     print the export lines only (services must already run)
#   scripts/services.sh stop    stop everything this script started
#
# Use it as:  eval "$(scripts/services.sh start)"
# Progress goes to stderr. Ports are fixed and uncommon (55432, 56379, 55672/55673, 51883, 57017)
# so they never collide with a system-wide server; tests isolate themselves with a database,
# vhost or db name of their own, so one set of servers serves a parallel test run.
set -euo pipefail
# Tool locations of a fresh machine (rustup, the Go tarball), in case the caller's PATH lacks them.
export PATH="$PATH:$HOME/.cargo/bin:/usr/local/go/bin"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${EDGEWATCH_SERVICES_DIR:-/tmp/edgewatch-services}
CACHE=${EDGEWATCH_CACHE_DIR:-/var/cache/edgewatch}

PG_PORT=55432
REDIS_PORT=56379
AMQP_PORT=55672        # shared broker: one vhost per test
AMQP_RESTART_PORT=55673 # a second broker that tests may restart without disturbing the others
MQTT_PORT=51883
MONGO_PORT=57017

log() { printf '[services %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

as_user() { # run as a system user when we are root (servers refuse root or drop to their user)
  local user=$1; shift
  if [ "$(id -u)" = 0 ]; then runuser -u "$user" -- "$@"; else "$@"; fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # wait_for NAME SECONDS COMMAND...
  local name=$1 seconds=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "$name did not answer within ${seconds}s (logs under $DIR)"
    sleep 0.3
  done
}

# --- installation ---------------------------------------------------------------------------
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

install_packages() {
  local missing=()
  [ -n "$(pg_bin)" ] || missing+=(postgresql)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v redis-cli >/dev/null || missing+=(redis-tools)
  [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing+=(rabbitmq-server)
  command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
  command -v mosquitto_pub >/dev/null || missing+=(mosquitto-clients)
  # The broker's TLS test makes its certificate with the openssl command line.
  command -v openssl >/dev/null || missing+=(openssl)
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
  command -v curl >/dev/null || missing+=(curl)
  # Prometheus (and promtool) for the packaging tests; `file` and python3-venv for
  # scripts/validate-deploy.sh and packaging/build-deb.sh.
  command -v prometheus >/dev/null || missing+=(prometheus)
  command -v file >/dev/null || missing+=(file)
  /usr/bin/python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
  # Node for the Socket.IO client the monitoring tests drive (Debian's npm brings nodejs).
  command -v npm >/dev/null || missing+=(npm)
  # Chromium for the dashboard's browser test (playwright-core drives it; never `playwright install`).
  command -v chromium >/dev/null || [ -x /usr/bin/chromium ] || missing+=(chromium)
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing packages: ${missing[*]} (run as root, or apt-get install them)"
    log "installing ${missing[*]} (apt-get)"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
}

ferretdb_bin() { echo "$CACHE/bin/ferretdb-test"; }

install_ferretdb() {
  # FerretDB v1.24 through its embeddable package (see scripts/ferretdb/main.go for why not the
  # upstream command); rebuilt only when the wrapper or its pinned version changes.
  local src="$ROOT/scripts/ferretdb" bin stamp want
  bin=$(ferretdb_bin)
  stamp="$bin.stamp"
  # The patch below is part of the build: bump "patched-1" when it changes.
  want=$( (cat "$src/go.mod" "$src/go.sum" "$src/main.go"; echo patched-1) | sha256sum | cut -c1-16)
  if [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then return; fi
  command -v go >/dev/null || die "Go is needed to build FerretDB (go 1.24 or newer)"
  log "building FerretDB v1.24.2 (first time only, a few minutes)"
  mkdir -p "$CACHE/bin" "$CACHE/go"
  local work="$CACHE/ferretdb-src"
  rm -rf "$work" && mkdir -p "$work" && cp "$src/go.mod" "$src/go.sum" "$src/main.go" "$work/"
  (cd "$work" && GOPATH="$CACHE/go" GOFLAGS=-modcacherw go mod vendor) >&2 \
    || die "fetching FerretDB's modules failed; see the go output above"
  # One-line fix of FerretDB v1.24's SQLite backend: it creates the _id index on the expression
  # `_ferretdb_sqlite_json->"_id"` but looks documents up (and updates and deletes them) with
  # `...->'$._id'`, which SQLite does not match to that index, so every `{_id: x}` read or
  # write scanned the whole collection (EXPLAIN: SCAN). Written as `->'_id'` the lookup is the
  # same JSON path and SQLite searches the index. Real MongoDB always serves _id from its index;
  # the stand-in should too, or the store's benchmarks measure FerretDB's scans.
  local meta="$work/vendor/github.com/FerretDB/FerretDB/internal/backends/sqlite/metadata/metadata.go"
  sed -i "s|IDColumn = DefaultColumn + \"->'\$._id'\"|IDColumn = DefaultColumn + \"->'_id'\"|" "$meta"
  grep -q "IDColumn = DefaultColumn + \"->'_id'\"" "$meta" \
    || die "patching FerretDB's SQLite _id lookup failed: $meta changed upstream"
  (cd "$work" && go build -mod=vendor -o "$bin" .) >&2 \
    || die "building FerretDB failed; see the go output above"
  echo "$want" >"$stamp"
}

# --- each service -----------------------------------------------------------------------------
start_postgres() {
  local data="$DIR/postgres" bin
  bin=$(pg_bin)
  if "$bin/pg_isready" -q -h 127.0.0.1 -p $PG_PORT; then log "postgres already running"; return; fi
  # Not running: start over from an empty cluster (stale pid files and half-written state from a
  # killed run cannot get in the way).
  rm -rf "$data"
  mkdir -p "$data"
  [ "$(id -u)" = 0 ] && chown postgres: "$data"
  as_user postgres "$bin/initdb" -D "$data" -U postgres -A trust --no-sync >"$DIR/postgres-init.log" 2>&1 \
    || die "initdb failed: $(tail -n 5 "$DIR/postgres-init.log")"
  log "starting postgres on 127.0.0.1:$PG_PORT"
  # Throwaway data: durability off for speed; enough connections for a parallel test run.
  as_user postgres "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start -o \
    "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $data -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400" \
    >&2 || die "postgres did not start: $(tail -n 5 "$data/server.log")"
  wait_for postgres 60 "$bin/pg_isready" -h 127.0.0.1 -p $PG_PORT
}

stop_postgres() {
  [ -f "$DIR/postgres/postmaster.pid" ] && as_user postgres "$(pg_bin)/pg_ctl" -D "$DIR/postgres" -m fast stop >&2 || true
}

start_redis() {
  if redis-cli -p $REDIS_PORT ping >/dev/null 2>&1; then log "redis already running"; return; fi
  mkdir -p "$DIR/redis"
  log "starting redis on 127.0.0.1:$REDIS_PORT"
  redis-server --port $REDIS_PORT --bind 127.0.0.1 --daemonize yes --dir "$DIR/redis" \
    --save '' --appendonly no --pidfile "$DIR/redis/redis.pid" --logfile "$DIR/redis/redis.log" >&2
  wait_for redis 30 redis-cli -p $REDIS_PORT ping
}

stop_redis() { redis-cli -p $REDIS_PORT shutdown nosave >/dev/null 2>&1 || true; }

# RabbitMQ: each node gets its own name, ports, data and a `ctl` wrapper carrying its environment.
rabbit_setup() { # rabbit_setup NAME AMQP_PORT
  local name=$1 port=$2 dir="$DIR/$1"
  mkdir -p "$dir/log"
  cat >"$dir/rabbitmq.conf" <<EOF
listeners.tcp.1 = 127.0.0.1:$port
management.tcp.ip = 127.0.0.1
management.tcp.port = $((port + 100))
disk_free_limit.absolute = 50MB
log.console = false
EOF
  echo '[rabbitmq_management].' >"$dir/enabled_plugins"
  cat >"$dir/env" <<EOF
export RABBITMQ_NODENAME=$name@localhost
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT=$port
export RABBITMQ_DIST_PORT=$((port + 200))
export RABBITMQ_CONFIG_FILE=$dir/rabbitmq.conf
export RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins
export RABBITMQ_MNESIA_BASE=$dir/mnesia
export RABBITMQ_LOG_BASE=$dir/log
export RABBITMQ_PID_FILE=$dir/rabbitmq.pid
export ERL_EPMD_ADDRESS=127.0.0.1
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
EOF
  cat >"$dir/ctl" <<EOF
#!/usr/bin/env bash
. "$dir/env"
exec /usr/lib/rabbitmq/bin/rabbitmqctl -n \$RABBITMQ_NODENAME "\$@"
EOF
  cat >"$dir/start" <<EOF
#!/usr/bin/env bash
# Starts this RabbitMQ node and waits until it serves AMQP.
set -e
. "$dir/env"
rm -f "$dir/rabbitmq.pid"
/usr/lib/rabbitmq/bin/rabbitmq-server -detached >>"$dir/log/start.log" 2>&1
# `wait` follows the pid file until the node has booted (await_startup needs a reachable node).
"$dir/ctl" wait --timeout 120 "$dir/rabbitmq.pid" >/dev/null
EOF
  cat >"$dir/restart" <<EOF
#!/usr/bin/env bash
# Stops this RabbitMQ node (connections drop, durable queues and persistent messages stay on
# disk) and starts it again. Tests use it to prove clients recover without losing anything.
# Holds the node's lock meanwhile, so a concurrent \`services.sh start\` waits instead of taking
# the stopped node for a dead one and starting it empty.
set -e
exec 9>"$dir/node.lock"
flock 9
"$dir/ctl" stop "$dir/rabbitmq.pid" >/dev/null 9>&-
"$dir/start" 9>&-
EOF
  chmod +x "$dir/ctl" "$dir/start" "$dir/restart"
}

start_rabbit() { # start_rabbit NAME AMQP_PORT
  local name=$1 port=$2
  # Not while a test restarts this node (its restart script holds the lock, and rewriting the
  # script bash is running would break it).
  mkdir -p "$DIR/$name"
  exec 9>"$DIR/$name/node.lock"
  flock 9
  rabbit_setup "$name" "$port"
  if port_open "$port" && "$DIR/$name/ctl" -q status >/dev/null 2>&1; then
    exec 9>&-
    log "$name already running"; return
  fi
  rm -rf "$DIR/$name/mnesia"  # throwaway: a node that is not running starts empty
  mkdir -p "$DIR/$name/mnesia"
  log "starting $name (RabbitMQ) on 127.0.0.1:$port, management on $((port + 100))"
  # The node must not inherit the lock, or it would hold it for as long as it runs.
  "$DIR/$name/start" 9>&- || die "$name did not start; see $DIR/$name/log"
  wait_for "$name management" 60 curl -fsS -u guest:guest "http://127.0.0.1:$((port + 100))/api/overview"
  exec 9>&-
}

stop_rabbit() { [ -x "$DIR/$1/ctl" ] && "$DIR/$1/ctl" stop >/dev/null 2>&1 || true; }

start_mosquitto() {
  if port_open $MQTT_PORT; then log "mosquitto already running"; return; fi
  mkdir -p "$DIR/mosquitto"
  cat >"$DIR/mosquitto/mosquitto.conf" <<EOF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
persistence false
pid_file $DIR/mosquitto/mosquitto.pid
log_dest none
EOF
  [ "$(id -u)" = 0 ] && chown -R mosquitto: "$DIR/mosquitto" 2>/dev/null || true
  log "starting mosquitto on 127.0.0.1:$MQTT_PORT"
  /usr/sbin/mosquitto -c "$DIR/mosquitto/mosquitto.conf" -d
  wait_for mosquitto 30 mosquitto_pub -h 127.0.0.1 -p $MQTT_PORT -t edgewatch/ping -m ok
}

stop_mosquitto() { [ -f "$DIR/mosquitto/mosquitto.pid" ] && kill "$(cat "$DIR/mosquitto/mosquitto.pid")" 2>/dev/null || true; }

start_ferretdb() {
  if port_open $MONGO_PORT; then log "ferretdb already running"; return; fi
  rm -rf "$DIR/ferretdb/data"
  mkdir -p "$DIR/ferretdb/data"
  log "starting FerretDB (SQLite backend) on 127.0.0.1:$MONGO_PORT"
  nohup "$(ferretdb_bin)" --listen-addr 127.0.0.1:$MONGO_PORT --handler sqlite \
    --sqlite-url "file:$DIR/ferretdb/data/" >"$DIR/ferretdb/ferretdb.log" 2>&1 &
  echo $! >"$DIR/ferretdb/ferretdb.pid"
  wait_for ferretdb 30 port_open $MONGO_PORT
}

stop_ferretdb() { [ -f "$DIR/ferretdb/ferretdb.pid" ] && kill "$(cat "$DIR/ferretdb/ferretdb.pid")" 2>/dev/null || true; }

print_env() {
  cat <<EOF
export EDGEWATCH_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres
export EDGEWATCH_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT
export EDGEWATCH_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f
export EDGEWATCH_TEST_AMQP_ADMIN_URL=http://guest:guest@127.0.0.1:$((AMQP_PORT + 100))
export EDGEWATCH_TEST_AMQP_RESTART_URL=amqp://guest:guest@127.0.0.1:$AMQP_RESTART_PORT/%2f
export EDGEWATCH_TEST_AMQP_RESTART_ADMIN_URL=http://guest:guest@127.0.0.1:$((AMQP_RESTART_PORT + 100))
export EDGEWATCH_TEST_AMQP_RESTART_CMD=$DIR/rabbitmq-restartable/restart
export EDGEWATCH_TEST_MQTT_URL=mqtt://127.0.0.1:$MQTT_PORT
export EDGEWATCH_TEST_MONGODB_URL=mongodb://127.0.0.1:$MONGO_PORT/
export EDGEWATCH_TEST_FERRETDB_BIN=$(ferretdb_bin)
EOF
}

case "${1:-start}" in
  start)
    mkdir -p "$DIR"
    chmod 755 "$DIR"
    install_packages
    install_ferretdb
    # Servers inherit this directory as their working directory; the caller's (a CI clone) may
    # be deleted while they keep running, and an Erlang node whose cwd is gone cannot even
    # answer `rabbitmqctl status`.
    cd "$DIR"
    start_postgres
    start_redis
    start_rabbit rabbitmq $AMQP_PORT
    start_rabbit rabbitmq-restartable $AMQP_RESTART_PORT
    start_mosquitto
    start_ferretdb
    log "all services answer"
    print_env | tee "$DIR/env"
    ;;
  env) print_env ;;
  stop)
    stop_ferretdb; stop_mosquitto; stop_rabbit rabbitmq-restartable; stop_rabbit rabbitmq
    stop_redis; stop_postgres
    log "stopped"
    ;;
  *) die "usage: $0 start|env|stop" ;;
esac
