#!/usr/bin/env bash
# SQL-level suites, run the way PostgreSQL tests its own locking: pg_regress for the
# single-session surface, pg_isolation_regress for concurrent behaviour, against fresh
# servers started as $RUNAS with the extension installed (non-test build):
#   main      preloaded server: every pg_test/regress test except cfg_* and standby_*,
#             and every isolation spec
#   small     preloaded, pg_named_locks.max_names = 16: cfg_small_*   (capacity, eviction)
#   large     preloaded, pg_named_locks.max_names = 4096: cfg_large_*  (sampled eviction)
#   nopreload not preloaded, pg_named_locks.max_names = 777: cfg_nopreload_*
#             (DSM registry of that size on 17+, NOTICE on 15/16)
#   standby   a streaming hot standby of the main server (pg_basebackup): standby_*
#   scripts/sql-tests.sh VERSION
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$ROOT/scripts/server.sh"

V=$1
PGC=$(pg_config_for "$V")
DIR=$RUN/sql-pg$V          # outputs; the servers live in $DIR/server and $DIR/standby
SRV=$DIR/server
PORT=$((${SQL_PORT_BASE:-24000} + V))
PGXS_DIR=$(pg_pgxs_dir "$V")
BINDIR=$(pg_bindir "$V")
REGRESS=$PGXS_DIR/../test/regress/pg_regress
ISOLATION=$PGXS_DIR/../test/isolation/pg_isolation_regress
PRELOAD="shared_preload_libraries = 'pg_named_locks'"

log "PostgreSQL $V: installing the extension"
install_extension "$V"

tests() { # tests DIR EXT GLOB...
    local d=$1 ext=$2; shift 2
    (cd "$d" && for g in "$@"; do ls $g."$ext" 2>/dev/null; done) | sed "s/\.$ext\$//" | sort -u
}
main_tests() {
    (cd "$ROOT/pg_test/regress/sql" && ls *.sql) | sed 's/\.sql$//' | grep -v -e '^cfg_' -e '^standby' | sort
}

status=0
run_regress() { # run_regress NAME SERVER-DIR PORT EXTRA-ARGS... -- TESTS...
    local name=$1 srv=$2 port=$3; shift 3
    local args=()
    while [ "$1" != -- ]; do args+=("$1"); shift; done; shift
    [ $# -gt 0 ] || return 0
    log "PostgreSQL $V: pg_regress ($name): $*"
    "$REGRESS" --host="$srv/sock" --port="$port" --user=postgres --bindir="$BINDIR" \
        --inputdir="$ROOT/pg_test/regress" --outputdir="$DIR/regress-$name" \
        "${args[@]}" "$@" || status=1
}

# main
rm -rf "$DIR"; mkdir -p "$DIR"
server_start "$V" "$SRV" "$PORT" "$PRELOAD" "wal_level = replica" "hot_standby = on" "max_wal_senders = 4"
trap 'server_stop "$SRV"; server_stop "$DIR/standby"' EXIT
run_regress main "$SRV" "$PORT" --dbname=regress_named_locks --load-extension=pg_named_locks -- $(main_tests)

log "PostgreSQL $V: pg_isolation_regress"
"$ISOLATION" --host="$SRV/sock" --port="$PORT" --user=postgres --bindir="$BINDIR" \
    --inputdir="$ROOT/pg_test/isolation" --outputdir="$DIR/isolation" \
    --dbname=isolation_named_locks --load-extension=pg_named_locks \
    $(tests "$ROOT/pg_test/isolation/specs" spec '*') || status=1

# standby: a streaming replica of the main server, read-only, in recovery
standby_tests=$(tests "$ROOT/pg_test/regress/sql" sql 'standby*')
if [ -n "$standby_tests" ]; then
    log "PostgreSQL $V: making a hot standby with pg_basebackup"
    SDIR=$DIR/standby
    fresh_runtime_dir "$SDIR"
    as_runas mkdir -p "$SDIR/sock"
    as_runas "$BINDIR/pg_basebackup" -h "$SRV/sock" -p "$PORT" -U postgres -D "$SDIR/data" -R -X stream -c fast
    {
        echo "port = $((PORT + 100))"
        echo "unix_socket_directories = '$SDIR/sock'"
    } | as_runas tee -a "$SDIR/data/postgresql.auto.conf" >/dev/null
    as_runas "$BINDIR/pg_ctl" -D "$SDIR/data" -l "$SDIR/server.log" -w -t 60 start >/dev/null \
        || { cat "$SDIR/server.log"; status=1; }
    # the regression database comes from the primary: --use-existing, no CREATE DATABASE
    run_regress standby "$SDIR" "$((PORT + 100))" --use-existing --dbname=regress_named_locks -- $standby_tests
    server_stop "$SDIR"
fi

# crash restart: a backend holding session and transaction named locks, with a waiter,
# is killed with SIGKILL; the postmaster reinitialises shared memory, and afterwards the
# registry is empty and consistent and the view shows no stale names or locks.
crash_test() {
    local psql=("$BINDIR/psql" -X -q -At -h "$SRV/sock" -p "$PORT" -U postgres -d regress_named_locks)
    local fail=0
    "${psql[@]}" -c "SELECT lock_named('crash-session')" -c "BEGIN" \
        -c "SELECT xact_lock_named('crash-xact')" -c "SELECT pg_sleep(60)" >/dev/null 2>&1 &
    local holder="" n=0 want=2
    for _ in $(seq 1 400); do
        n=$("${psql[@]}" -c "SELECT count(*) FROM advisory_locks_v WHERE lock_name LIKE 'crash-%'")
        if [ "$n" = 2 ] && [ $want = 2 ]; then
            # the holder has both locks: now a waiter queues behind it
            "${psql[@]}" -c "SET lock_timeout = '60s'" -c "SELECT lock_named('crash-xact')" >/dev/null 2>&1 &
            want=3
        fi
        [ "$n" = 3 ] && break
        sleep 0.05
    done
    holder=$("${psql[@]}" -c "SELECT pid FROM advisory_locks_v WHERE lock_name = 'crash-session'")
    [ "$n" = 3 ] && [ -n "$holder" ] || { echo "crash test: locks never showed up ($n)"; fail=1; }
    [ -n "$holder" ] && kill -KILL "$holder"
    wait || true
    for _ in $(seq 1 200); do
        "${psql[@]}" -c "SELECT 1" >/dev/null 2>&1 && break
        sleep 0.1
    done
    local after
    after=$("${psql[@]}" -c "SELECT names || ',' || (SELECT count(*) FROM advisory_locks_v)
                               FROM named_lock_registry_info()" 2>&1)
    [ "$after" = "0,0" ] || { echo "crash test: expected an empty registry and no locks, got: $after"; fail=1; }
    after=$("${psql[@]}" -c "SELECT lock_named('crash-session')" \
        -c "SELECT lock_name FROM advisory_locks_v WHERE pid = pg_backend_pid()" 2>&1 | tail -n 1)
    [ "$after" = "crash-session" ] || { echo "crash test: after restart got: $after"; fail=1; }
    grep -q "terminated by signal 9" "$SRV/server.log" || { echo "crash test: no crash in the log"; fail=1; }
    if [ $fail = 0 ]; then check_ok "crash restart (SIGKILL of a lock holder)"; else check_fail "crash restart"; status=1; fi
}
log "PostgreSQL $V: crash restart"
crash_test

# fencing tokens across a crash restart (SIGKILL of a backend), an immediate and a fast
# restart: each token is larger than every one before (the counter's high-water mark is
# read back from pg_named_locks.fence each time)
fence_restart_test() {
    local psql=("$BINDIR/psql" -X -q -At -h "$SRV/sock" -p "$PORT" -U postgres -d regress_named_locks)
    local fail=0 prev t step pid
    up() { for _ in $(seq 1 300); do "${psql[@]}" -c "SELECT 1" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
    token() { "${psql[@]}" -c "SELECT lock_named_fenced('restart-fence')" 2>&1; }
    prev=$(token)
    for step in crash immediate fast; do
        case $step in
            crash)
                "${psql[@]}" -c "SELECT lock_named_fenced('restart-held'), pg_sleep(60)" >/dev/null 2>&1 &
                pid=""
                for _ in $(seq 1 100); do
                    pid=$("${psql[@]}" -c "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
                                             AND pid <> pg_backend_pid() LIMIT 1")
                    [ -n "$pid" ] && break
                    sleep 0.05
                done
                [ -n "$pid" ] || { echo "fencing restart test: the holder never showed up"; fail=1; }
                [ -n "$pid" ] && kill -KILL "$pid"
                wait || true ;;
            *) as_runas "$BINDIR/pg_ctl" -D "$SRV/data" -l "$SRV/server.log" -w -t 60 restart -m "$step" >/dev/null ;;
        esac
        up || { echo "fencing restart test: server not back after $step"; fail=1; break; }
        t=$(token)
        if ! [[ "$t" =~ ^[0-9]+$ && "$prev" =~ ^[0-9]+$ ]] || [ "$t" -le "$prev" ]; then
            echo "fencing restart test: after $step the token $t is not larger than $prev"; fail=1
        fi
        prev=$t
    done
    if [ $fail = 0 ]; then
        check_ok "fencing tokens grow across a crash restart, an immediate and a fast restart"
    else
        check_fail "fencing tokens across restarts"; status=1
    fi
}
log "PostgreSQL $V: fencing tokens across restarts"
fence_restart_test

# small registry
server_start "$V" "$SRV" "$PORT" "$PRELOAD" "pg_named_locks.max_names = 16"
run_regress small "$SRV" "$PORT" --dbname=regress_named_locks --load-extension=pg_named_locks -- \
    $(tests "$ROOT/pg_test/regress/sql" sql 'cfg_small*')

# large registry: eviction passes sample the slots
server_start "$V" "$SRV" "$PORT" "$PRELOAD" "pg_named_locks.max_names = 4096"
run_regress large "$SRV" "$PORT" --dbname=regress_named_locks --load-extension=pg_named_locks -- \
    $(tests "$ROOT/pg_test/regress/sql" sql 'cfg_large*')

# not preloaded; max_names in postgresql.conf still sizes the DSM registry (17+)
server_start "$V" "$SRV" "$PORT" "pg_named_locks.max_names = 777"
run_regress nopreload "$SRV" "$PORT" --dbname=regress_named_locks --load-extension=pg_named_locks -- \
    $(tests "$ROOT/pg_test/regress/sql" sql 'cfg_nopreload*')

for f in "$DIR"/regress-*/regression.diffs "$DIR"/isolation/regression.diffs; do
    [ -s "$f" ] && { echo "---- $f"; cat "$f"; }
done
exit $status
