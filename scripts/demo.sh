#!/usr/bin/env bash
# Quick start: build and install the extension into PostgreSQL 18, start a server with it
# (data directory and socket under .run/demo, listening on 127.0.0.1 only), show two
# sessions contending for one named lock, and print how to connect.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$ROOT/scripts/server.sh"

"$ROOT/scripts/setup.sh"
DIR=$RUN/demo
PORT=${DEMO_PORT:-54318}
BINDIR=$(pg_bindir 18)

log "building and installing pg_named_locks into PostgreSQL 18"
cargo pgrx install --pg-config "$PG18_CONFIG" >"$RUN/install-demo.log" 2>&1 \
    || { cat "$RUN/install-demo.log"; exit 1; }

log "starting PostgreSQL 18 on 127.0.0.1:$PORT (data in $DIR/data)"
server_start 18 "$DIR" "$PORT"

psql_() { "$BINDIR/psql" -X -q -h "$DIR/sock" -p "$PORT" -U postgres -d postgres "$@"; }
psql_ -c "CREATE EXTENSION pg_named_locks"

log "session A takes lock_named('daily-report-job') and keeps it for 3 seconds"
psql_ -c "SELECT lock_named('daily-report-job') AS \"A: locked\"; SELECT pg_sleep(3)" >/dev/null &
A=$!
sleep 1
log "session B meanwhile"
psql_ -P footer=off <<'SQL'
\echo 'B: try_lock_named(''daily-report-job'') never waits:'
SELECT try_lock_named('daily-report-job') AS "B got it?";
\echo 'B: it is an ordinary advisory lock on named_lock_key(''daily-report-job''):'
SELECT named_lock_key('daily-report-job') AS key,
       pg_try_advisory_lock(named_lock_key('daily-report-job')) AS "built-in got it?";
\echo B: pg_locks shows the holder:
SELECT l.pid, l.mode, l.granted
  FROM pg_locks l
 WHERE l.locktype = 'advisory'
   AND l.objid = (named_lock_key('daily-report-job') & x'FFFFFFFF'::bigint)::oid;
\echo B: now waits with lock_named() until A ends...
\timing on
SELECT lock_named('daily-report-job') AS "B: locked after waiting";
\timing off
SELECT unlock_named('daily-report-job') AS "B: unlocked";
SQL
wait "$A"

cat <<MSG

The server keeps running. Connect with:
  $BINDIR/psql -h $DIR/sock -p $PORT -U postgres
  (or: psql "host=127.0.0.1 port=$PORT user=postgres")
Stop it with:
  $( [ "$(id -u)" = 0 ] && echo "runuser -u $RUNAS -- ")$BINDIR/pg_ctl -D $DIR/data stop
MSG
