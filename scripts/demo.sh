#!/usr/bin/env bash
# Quick start: build and install the extension into PostgreSQL 18, start a server with it
# (data directory and socket under .run/demo, listening on 127.0.0.1 only), show two
# sessions contending for one named lock, and print how to connect.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$ROOT/scripts/server.sh"

"$ROOT/scripts/setup.sh"
DIR=$RUN/demo
PORT=${DEMO_PORT:-24318}
BINDIR=$(pg_bindir 18)

log "building and installing pg_named_locks into PostgreSQL 18"
cargo pgrx install --pg-config "$PG18_CONFIG" >"$RUN/install-demo.log" 2>&1 \
    || { cat "$RUN/install-demo.log"; exit 1; }

log "starting PostgreSQL 18 on 127.0.0.1:$PORT (data in $DIR/data)"
server_start 18 "$DIR" "$PORT"

psql_() { "$BINDIR/psql" -X -q -h "$DIR/sock" -p "$PORT" -U postgres -d postgres "$@"; }
psql_ -c "CREATE EXTENSION pg_named_locks"

log "session A takes lock_named('daily-report-job') and keeps it for 4 seconds"
psql_ -c "SELECT lock_named('daily-report-job'); SELECT pg_sleep(4)" >/dev/null &
A=$!
sleep 1
log "session B: try_lock_named() never waits; the built-in on the same key is the same lock"
psql_ -P footer=off <<'SQL'
SELECT try_lock_named('daily-report-job') AS "B got it?",
       named_lock_key('daily-report-job') AS key,
       pg_try_advisory_lock(named_lock_key('daily-report-job')) AS "built-in got it?";
SQL
log "session B now waits in lock_named('daily-report-job'); session C looks at advisory_locks_v"
psql_ -P footer=off -c "SET application_name = 'session B'" \
      -c "SELECT 'B got the lock after A finished' AS b FROM (SELECT lock_named('daily-report-job')) s" &
B=$!
sleep 1
psql_ -P footer=off <<'SQL'
SELECT pid, lock_name, mode, granted, blocked_by,
       date_trunc('second', now() - coalesce(held_since, waiting_since)) AS "for",
       application_name
  FROM advisory_locks_v ORDER BY granted DESC;
SQL
wait "$A" "$B"

cat <<MSG

The server keeps running. Connect with:
  $BINDIR/psql -h $DIR/sock -p $PORT -U postgres
  (or: psql "host=127.0.0.1 port=$PORT user=postgres")
Stop it with:
  $( [ "$(id -u)" = 0 ] && echo "runuser -u $RUNAS -- ")$BINDIR/pg_ctl -D $DIR/data stop
MSG
