#!/usr/bin/env bash
# Fault injection with real servers and real sessions (pytest in pg_test/python/faults):
# SIGKILL of a lock holder (crash restart), abrupt client disconnects and
# pg_terminate_backend, cancel / statement_timeout / lock_timeout of waiters, a deadlock
# among three sessions, shared lock table exhaustion, PREPARE TRANSACTION, a streaming
# hot standby, and PgBouncer in transaction pooling mode.
#   scripts/fault-tests.sh VERSION [PYTEST-ARGS...]   (VERSION 18 or 15; e.g. -k standby)
# Servers, all started as $RUNAS under $RUN/faults-pgV and stopped on exit:
#   main     127.0.0.1:25000+V  preloaded, wal_level = replica (the standby's primary)
#   standby  127.0.0.1:25100+V  pg_basebackup -R of main, hot standby
#   small    127.0.0.1:25200+V  preloaded, tiny shared lock table (exhaustion tests)
#   bouncer  127.0.0.1:25400+V  PgBouncer, pool_mode = transaction, in front of main
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$ROOT/scripts/server.sh"

suite_version faults "$@"
shift
MAIN=$DIR/main
STANDBY=$DIR/standby
SMALL=$DIR/small
BOUNCER=$DIR/pgbouncer
PORT=$((25000 + V))
STANDBY_PORT=$((25100 + V))
SMALL_PORT=$((25200 + V))
BOUNCER_PORT=$((25400 + V))
POOL_SIZE=3
PRELOAD="shared_preload_libraries = 'pg_named_locks'"
# The whole pytest run, with margin below the 3-minute budget for setup and teardown.
PYTEST_BUDGET=${FAULTS_PYTEST_BUDGET:-140}

psql_at() { # psql_at SERVER-DIR PORT DB SQL...  (one value per line, unaligned)
    local srv=$1 port=$2 db=$3; shift 3
    local args=() s
    for s in "$@"; do args+=(-c "$s"); done
    PGCONNECT_TIMEOUT=10 "$BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$srv/sock" -p "$port" \
        -U postgres -d "$db" "${args[@]}"
}

bouncer_stop() {
    local pidfile=$BOUNCER/pgbouncer.pid pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile" 2>/dev/null) || return 0
    # SIGTERM = immediate shutdown (SIGINT would wait for client transactions).
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$pidfile"
}

cleanup() {
    bouncer_stop
    server_stop "$STANDBY"
    server_stop "$SMALL"
    server_stop "$MAIN"
}

# A previous run that was killed may have left servers behind in this directory.
if [ -d "$DIR" ]; then cleanup; fi
trap cleanup EXIT
fresh_runtime_dir "$DIR"

log "PostgreSQL $V: installing the extension"
install_extension "$V"

log "PostgreSQL $V: main server on 127.0.0.1:$PORT"
server_start "$V" "$MAIN" "$PORT" "$PRELOAD" "wal_level = replica" "hot_standby = on" \
    "max_wal_senders = 4" "log_line_prefix = '%m [%p] '"
# Server-side defaults so that no session of the suite, however it gets there (directly,
# through PgBouncer, on the standby), can wait forever; tests lower them where they need.
psql_at "$MAIN" "$PORT" postgres "CREATE DATABASE faults"
psql_at "$MAIN" "$PORT" faults \
    "CREATE EXTENSION pg_named_locks" \
    "ALTER DATABASE faults SET lock_timeout = '30s'" \
    "ALTER DATABASE faults SET statement_timeout = '45s'" \
    "CREATE TABLE pooled_counter (id int PRIMARY KEY, n int NOT NULL)"

log "PostgreSQL $V: hot standby on 127.0.0.1:$STANDBY_PORT (pg_basebackup)"
fresh_runtime_dir "$STANDBY"
as_runas mkdir -p "$STANDBY/sock"
as_runas timeout 120 "$BINDIR/pg_basebackup" -h "$MAIN/sock" -p "$PORT" -U postgres \
    -D "$STANDBY/data" -R -X stream -c fast
{
    echo "port = $STANDBY_PORT"
    echo "unix_socket_directories = '$STANDBY/sock'"
} | as_runas tee -a "$STANDBY/data/postgresql.auto.conf" >/dev/null
as_runas "$BINDIR/pg_ctl" -D "$STANDBY/data" -l "$STANDBY/server.log" -w -t 60 start >/dev/null \
    || { cat "$STANDBY/server.log"; exit 1; }

# The shared lock table holds max_locks_per_transaction * (MaxBackends +
# max_prepared_transactions) locks plus some slack; MaxBackends counts connections,
# autovacuum and background workers and WAL senders, so all are kept small.
log "PostgreSQL $V: small lock table server on 127.0.0.1:$SMALL_PORT"
server_start "$V" "$SMALL" "$SMALL_PORT" "$PRELOAD" "max_locks_per_transaction = 10" \
    "max_connections = 6" "max_prepared_transactions = 0" "max_wal_senders = 0" \
    "wal_level = minimal" "max_worker_processes = 2" "autovacuum = off" \
    "pg_named_locks.max_names = 100000"
psql_at "$SMALL" "$SMALL_PORT" postgres \
    "CREATE EXTENSION pg_named_locks" \
    "ALTER DATABASE postgres SET lock_timeout = '30s'" \
    "ALTER DATABASE postgres SET statement_timeout = '45s'"

log "PostgreSQL $V: PgBouncer (transaction pooling) on 127.0.0.1:$BOUNCER_PORT"
fresh_runtime_dir "$BOUNCER"
as_runas tee "$BOUNCER/userlist.txt" >/dev/null <<<'"postgres" ""'
as_runas tee "$BOUNCER/pgbouncer.ini" >/dev/null <<EOF
[databases]
faults = host=127.0.0.1 port=$PORT dbname=faults user=postgres pool_size=$POOL_SIZE
; one server connection: which backend a transaction lands on is then known
faults_single = host=127.0.0.1 port=$PORT dbname=faults user=postgres pool_size=1

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $BOUNCER/userlist.txt
pool_mode = transaction
default_pool_size = $POOL_SIZE
max_client_conn = 100
; a server connection broken by the crash-restart test is noticed before reuse
server_check_delay = 0
query_wait_timeout = 30
logfile = $BOUNCER/pgbouncer.log
pidfile = $BOUNCER/pgbouncer.pid
EOF
as_runas /usr/sbin/pgbouncer -d "$BOUNCER/pgbouncer.ini" >/dev/null
bouncer_up=0
for _ in $(seq 1 100); do
    if PGCONNECT_TIMEOUT=5 "$BINDIR/psql" -X -q -At -h 127.0.0.1 -p "$BOUNCER_PORT" -U postgres -d faults \
        -c "SELECT 1" >/dev/null 2>&1; then bouncer_up=1; break; fi
    sleep 0.1
done
[ $bouncer_up = 1 ] || { cat "$BOUNCER/pgbouncer.log"; echo "PgBouncer did not come up"; exit 1; }

log "PostgreSQL $V: pytest pg_test/python/faults"
status=0
export FAULTS_VERSION=$V
export FAULTS_BINDIR=$BINDIR
export FAULTS_MAIN="host=127.0.0.1 port=$PORT user=postgres dbname=faults"
export FAULTS_MAIN_LOG=$MAIN/server.log
export FAULTS_STANDBY="host=127.0.0.1 port=$STANDBY_PORT user=postgres dbname=faults"
export FAULTS_SMALL="host=127.0.0.1 port=$SMALL_PORT user=postgres dbname=postgres"
export FAULTS_BOUNCER="host=127.0.0.1 port=$BOUNCER_PORT user=postgres dbname=faults"
export FAULTS_BOUNCER_SINGLE="host=127.0.0.1 port=$BOUNCER_PORT user=postgres dbname=faults_single"
export FAULTS_POOL_SIZE=$POOL_SIZE
export FAULTS_KILLED=$DIR/killed-pids   # backends the suite SIGKILLs on purpose
export PYTHONDONTWRITEBYTECODE=1
(cd "$ROOT" && timeout -k 10 "$PYTEST_BUDGET" "$VENV/bin/python" -m pytest pg_test/python/faults \
    -p no:cacheprovider -p no:asyncio -q --timeout=60 "$@") || status=1

# Suite-wide invariants, checked once every client is gone.
log "PostgreSQL $V: after the suite"
bouncer_stop
left=""
for _ in $(seq 1 100); do
    left=$(psql_at "$MAIN" "$PORT" faults \
        "SELECT (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory') || ' locks, '
             || (SELECT count(*) FROM pg_prepared_xacts) || ' prepared'" 2>&1) || true
    [ "$left" = "0 locks, 0 prepared" ] && break
    sleep 0.1
done
if [ "$left" = "0 locks, 0 prepared" ]; then
    check_ok "pg$V faults: no advisory lock or prepared transaction left on the main server"
else
    check_fail "pg$V faults: left on the main server after the suite: $left"; status=1
fi
# The only backend crashes allowed are the SIGKILLs the suite sends on purpose.
crashed=$( (grep -ho 'PID [0-9]*) was terminated by signal [0-9]*' \
    "$MAIN/server.log" "$STANDBY/server.log" "$SMALL/server.log" || true) | LC_ALL=C sort -u)
expected=$( (cat "$FAULTS_KILLED" 2>/dev/null || true) | sed 's/.*/PID &) was terminated by signal 9/' \
    | LC_ALL=C sort -u)
if [ "$crashed" = "$expected" ]; then
    check_ok "pg$V faults: no backend crash but the intended SIGKILLs ($(grep -c . <<<"$expected" || true))"
else
    check_fail "pg$V faults: unexpected backend crashes: [$crashed], expected [$expected]"; status=1
fi
if grep -h 'PANIC' "$MAIN/server.log" "$STANDBY/server.log" "$SMALL/server.log"; then
    check_fail "pg$V faults: PANIC in a server log"; status=1
else
    check_ok "pg$V faults: no PANIC in the server logs"
fi
standby_ok=$(psql_at "$STANDBY" "$STANDBY_PORT" faults "SELECT pg_is_in_recovery()" 2>&1) || true
if [ "$standby_ok" = t ]; then
    check_ok "pg$V faults: the standby is still a running hot standby"
else
    check_fail "pg$V faults: the standby is gone: $standby_ok"; status=1
fi
exit $status
