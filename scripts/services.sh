#!/usr/bin/env bash
# Local services for sekiban's tests: PostgreSQL, Redis and a Cosmos DB
# stand-in (the npm package @vercel/cosmosdb-server).
#
#   scripts/services.sh start  [postgres|redis|cosmos ...]   (default: all)
#   scripts/services.sh stop   [postgres|redis|cosmos ...]
#   scripts/services.sh status [postgres|redis|cosmos ...]
#   scripts/services.sh env                                   (export lines)
#
# `start` is idempotent: a service that already answers is left alone.
# Each start waits until the service accepts connections and exits non-zero
# (pointing at its log) if it does not.
#
# Everything (packages installed through npm, data, logs, pid files) lives
# under ${SEKIBAN_CACHE:-$HOME/.cache/sekiban}, never in the repository.
# Exception: when run as root and the postgres user cannot reach that
# directory (e.g. it is under /root), the PostgreSQL cluster goes under the
# postgres user's home and a symlink to it is left in the cache.
#
# Knobs (environment):
#   SEKIBAN_CACHE              cache root (default $HOME/.cache/sekiban)
#   SEKIBAN_POSTGRES_DSN       if set and reachable, used as is (nothing started)
#   SEKIBAN_PG_PORT            default 55432
#   SEKIBAN_REDIS_PORT         default 56379
#   SEKIBAN_COSMOS_PORT        default 58081
#   SEKIBAN_COSMOS_SSL         1 (default): HTTPS with the package's self-signed,
#                              expired certificate (azure-cosmos skips TLS
#                              verification by itself for 127.0.0.1/localhost);
#                              0: plain HTTP (--no-ssl): the server still
#                              advertises https:// locations, so the client
#                              needs enable_endpoint_discovery=False
#   SEKIBAN_SERVICE_TIMEOUT    seconds to wait for each service (default 60)
#
# The Cosmos stand-in keeps everything in memory: stopping it loses all data.
set -euo pipefail

CACHE_DIR="${SEKIBAN_CACHE:-$HOME/.cache/sekiban}"
RUN_DIR="$CACHE_DIR/services"
PG_PORT="${SEKIBAN_PG_PORT:-55432}"
REDIS_PORT="${SEKIBAN_REDIS_PORT:-56379}"
COSMOS_PORT="${SEKIBAN_COSMOS_PORT:-58081}"
COSMOS_SSL="${SEKIBAN_COSMOS_SSL:-1}"
TIMEOUT="${SEKIBAN_SERVICE_TIMEOUT:-60}"

COSMOS_NPM_PACKAGE="@vercel/cosmosdb-server"
COSMOS_NPM_VERSION="1.0.1"
COSMOS_PREFIX="$CACHE_DIR/cosmos"
# The well-known public key of the Azure Cosmos DB emulator; the stand-in
# server accepts any key.
COSMOS_KEY="C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="

PG_USER=sekiban
PG_PASSWORD=sekiban
PG_DB=sekiban
OUR_PG_DSN="postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"

ALL_SERVICES=(postgres redis cosmos)

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" = 0 ]; }

# ---------------------------------------------------------------- apt ----
APT_UPDATED=0
apt_install() {
    is_root || die "need root to apt-get install $* (or install it yourself)"
    if [ "$APT_UPDATED" = 0 ]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        APT_UPDATED=1
    fi
    # Keep the packages' own init scripts from starting system-wide
    # instances (default cluster on 5432, redis on 6379): we start private
    # ones.  Only add a policy-rc.d if there is none, and remove only ours.
    local own_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    local rc=0
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 || rc=$?
    if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    [ "$rc" = 0 ] || die "apt-get install $* failed"
}

# wait_for WHAT LOGFILE PID CMD...: wait until CMD succeeds; fail (with the
# log's tail) on timeout or, when PID is not empty, as soon as PID exits.
wait_for() {
    local what="$1" logfile="$2" pid="$3"; shift 3
    local deadline=$((SECONDS + TIMEOUT))
    until "$@" >/dev/null 2>&1; do
        if [ -n "$pid" ] && ! pid_alive "$pid"; then
            log "$what exited during start-up; last lines of $logfile:"
            tail -n 30 "$logfile" >&2 2>/dev/null || true
            die "$what failed to start (log: $logfile)"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "$what did not accept connections within ${TIMEOUT}s; last lines of $logfile:"
            tail -n 30 "$logfile" >&2 2>/dev/null || true
            die "$what failed to start (log: $logfile)"
        fi
        sleep 0.2
    done
}

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
read_pid() { [ -f "$1" ] && head -n1 "$1" | tr -dc '0-9' || true; }

# ----------------------------------------------------------- postgres ----
pg_bindir() {
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
    if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; fi
}

# Run a server-side command as the cluster owner (postgres when root).
as_pg() {
    if is_root; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

# Where the cluster lives; must be reachable by its owner.
PG_DIR=""
pg_dir() {
    [ -n "$PG_DIR" ] && { echo "$PG_DIR"; return; }
    local d="$RUN_DIR/postgres"
    if is_root; then
        if [ -L "$d" ]; then
            PG_DIR="$(readlink -f "$d")"
        elif runuser -u postgres -- test -x "$RUN_DIR" 2>/dev/null; then
            PG_DIR="$d"
        else
            local home
            home="$(getent passwd postgres | cut -d: -f6)"
            [ -n "$home" ] || home=/var/lib/postgresql
            PG_DIR="$home/sekiban-services"
        fi
    else
        PG_DIR="$d"
    fi
    echo "$PG_DIR"
}

pg_can_connect() {  # $1 = DSN
    command -v psql >/dev/null 2>&1 || return 1
    PGCONNECT_TIMEOUT=3 psql "$1" -XAtqc 'select 1' >/dev/null 2>&1
}

external_pg_ok() {
    [ -n "${SEKIBAN_POSTGRES_DSN:-}" ] && [ "$SEKIBAN_POSTGRES_DSN" != "$OUR_PG_DSN" ] \
        && pg_can_connect "$SEKIBAN_POSTGRES_DSN"
}

pg_admin() {  # psql as the cluster superuser over TCP (trust auth)
    PGCONNECT_TIMEOUT=3 psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"
}

pg_ensure_db() {
    pg_admin -d postgres >/dev/null <<SQL
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') THEN
    CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
    GRANT pg_signal_backend TO $PG_USER;
  END IF;
END
\$\$;
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_USER'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DB')\\gexec
SQL
}

start_postgres() {
    if [ -n "${SEKIBAN_POSTGRES_DSN:-}" ] && [ "$SEKIBAN_POSTGRES_DSN" != "$OUR_PG_DSN" ]; then
        command -v psql >/dev/null 2>&1 || [ -n "$(pg_bindir)" ] || apt_install postgresql-client
        if pg_can_connect "$SEKIBAN_POSTGRES_DSN"; then
            log "postgres: using SEKIBAN_POSTGRES_DSN (reachable); nothing started"
            return 0
        fi
        log "postgres: SEKIBAN_POSTGRES_DSN is set but not reachable; starting a private cluster at $OUR_PG_DSN"
    fi
    if pg_can_connect "$OUR_PG_DSN"; then
        log "postgres: already up at $OUR_PG_DSN"
        return 0
    fi

    local bindir
    bindir="$(pg_bindir)"
    if [ -z "$bindir" ]; then
        apt_install postgresql
        bindir="$(pg_bindir)"
        [ -n "$bindir" ] || die "postgres: no initdb under /usr/lib/postgresql/*/bin after installing postgresql"
    fi

    local dir data logfile
    dir="$(pg_dir)"; data="$dir/data"; logfile="$dir/postgres.log"
    mkdir -p "$dir"
    if is_root; then
        chown postgres:postgres "$dir"
        if [ "$dir" != "$RUN_DIR/postgres" ]; then
            mkdir -p "$RUN_DIR"
            [ -e "$RUN_DIR/postgres" ] || ln -s "$dir" "$RUN_DIR/postgres"
        fi
    fi

    # Something already on the port that is not our cluster?
    if "$bindir/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" 2>/dev/null; then
        if as_pg "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
            log "postgres: our cluster is up; ensuring role/database"
            pg_ensure_db || die "postgres: could not create role/database (log: $logfile)"
            return 0
        fi
        die "postgres: port $PG_PORT is taken by a server that is not ours and $OUR_PG_DSN does not work"
    fi

    if [ ! -f "$data/PG_VERSION" ]; then
        log "postgres: initdb $data"
        rm -rf "$data"
        as_pg "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 \
            --locale=C.UTF-8 --no-instructions >"$dir/initdb.log" 2>&1 \
            || { tail -n 20 "$dir/initdb.log" >&2; die "postgres: initdb failed (log: $dir/initdb.log)"; }
        # Loopback TCP only, no unix socket (its default directory
        # /run/postgresql may not exist when the Debian service never ran).
        # Durability settings are left at their defaults on purpose.
        as_pg tee -a "$data/postgresql.conf" >/dev/null <<CONF

# --- sekiban test cluster ---
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = ''
max_connections = 200
log_min_messages = warning
CONF
    fi

    log "postgres: starting on 127.0.0.1:$PG_PORT (data $data)"
    as_pg "$bindir/pg_ctl" -D "$data" -l "$logfile" -w -t "$TIMEOUT" start >/dev/null 2>&1 || {
        log "last lines of $logfile:"; tail -n 30 "$logfile" >&2 2>/dev/null || true
        die "postgres failed to start (log: $logfile)"
    }
    wait_for postgres "$logfile" "" "$bindir/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"
    pg_ensure_db || die "postgres: could not create role/database (log: $logfile)"
    pg_can_connect "$OUR_PG_DSN" || die "postgres: started but $OUR_PG_DSN does not connect (log: $logfile)"
    log "postgres: up at $OUR_PG_DSN"
}

stop_postgres() {
    local bindir dir
    bindir="$(pg_bindir)"; dir="$(pg_dir)"
    if [ -z "$bindir" ] || [ ! -f "$dir/data/postmaster.pid" ] \
        || ! as_pg "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        log "postgres: not running (ours)"; return 0
    fi
    as_pg "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t "$TIMEOUT" stop >/dev/null \
        || die "postgres: pg_ctl stop failed (log: $dir/postgres.log)"
    log "postgres: stopped"
}

status_postgres() {
    if external_pg_ok; then echo "postgres: up (external SEKIBAN_POSTGRES_DSN)"; return 0; fi
    if pg_can_connect "$OUR_PG_DSN"; then echo "postgres: up $OUR_PG_DSN"; return 0; fi
    echo "postgres: down"; return 1
}

postgres_dsn() {
    if external_pg_ok; then echo "$SEKIBAN_POSTGRES_DSN"; else echo "$OUR_PG_DSN"; fi
}

# -------------------------------------------------------------- redis ----
REDIS_DIR="$RUN_DIR/redis"

redis_ping() {
    command -v redis-cli >/dev/null 2>&1 || return 1
    [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]
}

start_redis() {
    if redis_ping; then log "redis: already up on 127.0.0.1:$REDIS_PORT"; return 0; fi
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        apt_install redis-server
    fi
    mkdir -p "$REDIS_DIR"
    local logfile="$REDIS_DIR/redis.log"
    : >"$logfile"
    log "redis: starting on 127.0.0.1:$REDIS_PORT"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
        --pidfile "$REDIS_DIR/redis.pid" --logfile "$logfile" --dir "$REDIS_DIR" \
        --save "" --appendonly no --protected-mode yes >>"$logfile" 2>&1 \
        || { tail -n 30 "$logfile" >&2; die "redis failed to start (log: $logfile)"; }
    wait_for redis "$logfile" "" redis_ping
    log "redis: up at redis://127.0.0.1:$REDIS_PORT/0"
}

stop_redis() {
    local pid
    pid="$(read_pid "$REDIS_DIR/redis.pid")"
    if ! pid_alive "$pid"; then log "redis: not running (ours)"; return 0; fi
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + TIMEOUT))
    while pid_alive "$pid"; do
        [ "$SECONDS" -lt "$deadline" ] || die "redis: pid $pid did not exit"
        sleep 0.1
    done
    rm -f "$REDIS_DIR/redis.pid"
    log "redis: stopped"
}

status_redis() {
    if redis_ping; then echo "redis: up redis://127.0.0.1:$REDIS_PORT/0"; return 0; fi
    echo "redis: down"; return 1
}

# ------------------------------------------------------------- cosmos ----
COSMOS_DIR="$RUN_DIR/cosmos"
COSMOS_PKG_DIR="$COSMOS_PREFIX/node_modules/$COSMOS_NPM_PACKAGE"

cosmos_scheme() { if [ "$COSMOS_SSL" = 0 ]; then echo http; else echo https; fi; }
cosmos_endpoint() { echo "$(cosmos_scheme)://127.0.0.1:$COSMOS_PORT/"; }

cosmos_ping() {
    # GET / returns the database-account document.
    curl -sfk --max-time 3 -o /dev/null "$(cosmos_endpoint)"
}

cosmos_installed_version() {
    [ -f "$COSMOS_PKG_DIR/package.json" ] || return 0
    node -e 'process.stdout.write(require(process.argv[1]).version)' "$COSMOS_PKG_DIR/package.json" 2>/dev/null || true
}

# Local fix, applied after install: reading a missing document (or one with
# another partition key) answers 500 "Cannot read properties of undefined"
# in 1.0.1 where Cosmos DB answers 404.  Idempotent.
cosmos_patch() {
    local f="$COSMOS_PKG_DIR/lib/handler/read-document.js"
    local bad='if (data[path] !== clientKeys[i]) {' good='if (!data || data[path] !== clientKeys[i]) {'
    grep -qF "$good" "$f" && return 0
    if grep -qF "$bad" "$f"; then
        sed -i "s/if (data\[path\] !== clientKeys\[i\]) {/if (!data || data[path] !== clientKeys[i]) {/" "$f"
        grep -qF "$good" "$f" || die "cosmos: could not patch $f"
        log "cosmos: patched read-document (404 instead of 500 for a missing document)"
    else
        log "cosmos: WARNING: $f changed upstream; read-document patch not applied"
    fi
}

start_cosmos() {
    if cosmos_ping; then log "cosmos: already up at $(cosmos_endpoint)"; return 0; fi
    command -v curl >/dev/null 2>&1 || apt_install curl ca-certificates
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        apt_install nodejs npm
    fi
    if [ "$(cosmos_installed_version)" != "$COSMOS_NPM_VERSION" ]; then
        log "cosmos: npm install $COSMOS_NPM_PACKAGE@$COSMOS_NPM_VERSION into $COSMOS_PREFIX"
        mkdir -p "$COSMOS_PREFIX"
        npm install --prefix "$COSMOS_PREFIX" --no-audit --no-fund --omit=dev \
            "$COSMOS_NPM_PACKAGE@$COSMOS_NPM_VERSION" >&2 \
            || die "cosmos: npm install $COSMOS_NPM_PACKAGE@$COSMOS_NPM_VERSION failed"
    fi
    cosmos_patch
    mkdir -p "$COSMOS_DIR"
    local logfile="$COSMOS_DIR/cosmos.log" pidfile="$COSMOS_DIR/cosmos.pid" pid
    pid="$(read_pid "$pidfile")"
    if pid_alive "$pid"; then
        log "cosmos: pid $pid exists but does not answer; stopping it"
        stop_cosmos
    fi
    local args=(-p "$COSMOS_PORT" --host 127.0.0.1)
    [ "$COSMOS_SSL" = 0 ] && args+=(--no-ssl)
    log "cosmos: starting at $(cosmos_endpoint) (in memory: data is lost on stop)"
    setsid node "$COSMOS_PKG_DIR/lib/cli.js" "${args[@]}" </dev/null >"$logfile" 2>&1 &
    echo $! >"$pidfile"
    wait_for cosmos "$logfile" "$(read_pid "$pidfile")" cosmos_ping
    log "cosmos: up at $(cosmos_endpoint)"
}

stop_cosmos() {
    local pidfile="$COSMOS_DIR/cosmos.pid" pid
    pid="$(read_pid "$pidfile")"
    if ! pid_alive "$pid"; then rm -f "$pidfile"; log "cosmos: not running (ours)"; return 0; fi
    kill "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while pid_alive "$pid"; do
        if [ "$SECONDS" -ge "$deadline" ]; then kill -9 "$pid" 2>/dev/null || true; fi
        sleep 0.1
    done
    rm -f "$pidfile"
    log "cosmos: stopped"
}

status_cosmos() {
    if cosmos_ping; then echo "cosmos: up $(cosmos_endpoint)"; return 0; fi
    echo "cosmos: down"; return 1
}

# ---------------------------------------------------------------- env ----
print_env() {
    local dsn
    dsn="$(postgres_dsn)"
    printf 'export SEKIBAN_POSTGRES_DSN=%q\n' "$dsn"
    printf 'export SEKIBAN_REDIS_URL=%q\n' "redis://127.0.0.1:$REDIS_PORT/0"
    printf 'export SEKIBAN_COSMOS_ENDPOINT=%q\n' "$(cosmos_endpoint)"
    printf 'export SEKIBAN_COSMOS_KEY=%q\n' "$COSMOS_KEY"
}

# --------------------------------------------------------------- main ----
usage() {
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

cmd="${1:-}"
[ -n "$cmd" ] || usage
shift
services=("$@")
[ "${#services[@]}" -gt 0 ] || services=("${ALL_SERVICES[@]}")
for s in "${services[@]}"; do
    case "$s" in postgres|redis|cosmos) ;; *) die "unknown service '$s' (postgres, redis, cosmos)";; esac
done

case "$cmd" in
    start)
        mkdir -p "$RUN_DIR"
        # One start at a time (parallel jobs would race on initdb/npm): re-run
        # this script under flock; -o keeps the lock's descriptor out of the
        # script, so the daemons it starts cannot hold the lock.
        if [ -z "${SEKIBAN_SERVICES_LOCKED:-}" ] && command -v flock >/dev/null 2>&1; then
            SEKIBAN_SERVICES_LOCKED=1 exec flock -o -w 900 "$RUN_DIR/start.lock" bash "$0" "$cmd" "$@"
        fi
        for s in "${services[@]}"; do
            t0=$SECONDS
            "start_$s"
            log "$s: ready in $((SECONDS - t0))s"
        done
        ;;
    stop)
        for s in "${services[@]}"; do "stop_$s"; done
        ;;
    status)
        rc=0
        for s in "${services[@]}"; do "status_$s" || rc=1; done
        exit "$rc"
        ;;
    env)
        print_env
        ;;
    -h|--help|help) usage ;;
    *) die "unknown command '$cmd' (start, stop, status, env)" ;;
esac
