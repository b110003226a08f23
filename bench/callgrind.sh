#!/usr/bin/env bash
# Instruction counts per lock+unlock pair (and per pgbench transaction) under
# valgrind --tool=callgrind: unlike times, they do not move with other load on the
# machine, so they show what a code change did. Release build into PostgreSQL 18, a
# server run under callgrind as $RUNAS on a unix socket only, each measurement in its own
# session (one callgrind file per backend), and the difference of two sizes so fixed
# costs cancel:
#   ./bench/callgrind.sh            about 5 minutes
#   ./bench/callgrind.sh --keep     leave the callgrind files for callgrind_annotate
# Writes nothing under bench/results; prints a table.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"

KEEP=0
[ "${1:-}" = --keep ] && KEEP=1
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }
"$ROOT/scripts/setup.sh"
BINDIR=$(pg_bindir 18)
DIR=$RUN/callgrind
log "building and installing pg_named_locks (release) into PostgreSQL 18"
cargo pgrx install --release --pg-config "$PG18_CONFIG" >"$RUN/install-callgrind.log" 2>&1 \
    || { cat "$RUN/install-callgrind.log"; exit 1; }

fresh_runtime_dir "$DIR"
as_runas mkdir -p "$DIR/sock" "$DIR/out"
as_runas "$BINDIR/initdb" -D "$DIR/data" -U postgres -E UTF8 --locale=C -A trust >/dev/null
{
    echo "listen_addresses = ''"
    echo "unix_socket_directories = '$DIR/sock'"
    echo "port = 27020"
    echo "shared_preload_libraries = 'pg_named_locks'"
    echo "pg_named_locks.max_names = 20000"
    echo "max_locks_per_transaction = 256"
    echo "jit = off"
} | as_runas tee -a "$DIR/data/postgresql.conf" >/dev/null
as_runas valgrind --tool=callgrind --callgrind-out-file="$DIR/out/cg.%p" \
    "$BINDIR/postgres" -D "$DIR/data" >"$DIR/server.log" 2>&1 &
stop() {
    as_runas "$BINDIR/pg_ctl" -D "$DIR/data" stop -m fast >/dev/null 2>&1 || true
    [ $KEEP = 1 ] || rm -rf "$DIR/out"
}
trap stop EXIT
psql_() { "$BINDIR/psql" -X -q -At -h "$DIR/sock" -p 27020 -U postgres -d postgres "$@"; }
for _ in $(seq 1 240); do psql_ -c 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.5; done

psql_ >/dev/null <<'SQL'
CREATE EXTENSION pg_named_locks;
CREATE TABLE names AS SELECT 'job-' || i AS name,
       ('x' || substr(md5('job-' || i), 1, 16))::bit(64)::bigint AS k
  FROM generate_series(1, 1000) i;
CREATE TABLE loop1 AS SELECT g FROM generate_series(1, 10) g;
CREATE TABLE loop3 AS SELECT g FROM generate_series(1, 30) g;
CREATE TABLE new1 AS SELECT 'new1-' || i AS name, i::bigint AS k FROM generate_series(1, 20000) i;
CREATE TABLE new3 AS SELECT 'new3-' || i AS name, i::bigint AS k FROM generate_series(1, 60000) i;
VACUUM ANALYZE;
SQL

# Instructions of the backend that ran "$@" (new sessions), read from the callgrind
# files that appear once the sessions have ended: the largest one (pgbench opens a second,
# short connection). Waits until no new file has appeared for a second.
measure() {
    local before now prev="" n=0
    before=$(ls "$DIR/out")
    "$@" >/dev/null
    for _ in $(seq 1 300); do
        sleep 0.2
        now=$(comm -13 <(echo "$before") <(ls "$DIR/out") | tr '\n' ' ')
        if [ -n "$now" ] && [ "$now" = "$prev" ]; then
            n=$((n + 1)); [ $n -ge 5 ] && break
        else
            n=0
        fi
        prev=$now
    done
    local best=0 f v
    for f in $now; do
        v=$(grep -m1 '^summary:' "$DIR/out/$f" | awk '{print $2}')
        [ -n "$v" ] && [ "$v" -gt "$best" ] && best=$v
    done
    echo "$best"
}
repeated() { psql_ -c "SELECT count(*) FROM $1, LATERAL (SELECT name, k FROM names WHERE g > 0 OFFSET 0) n WHERE $2"; }
never_seen() { psql_ -c "SELECT count(*) FROM $1 WHERE $2"; }
pgbench_() { "$BINDIR/pgbench" -n -M prepared -h "$DIR/sock" -p 27020 -U postgres -c 1 -t "$1" \
                 -D k=12345 -D name=bench-1 -f "$2" postgres; }
printf 'SELECT pg_advisory_lock(:k);\nSELECT pg_advisory_unlock(:k);\n' >"$DIR/builtin.pgb"
printf 'SELECT lock_named(:name);\nSELECT unlock_named(:name);\n' >"$DIR/named.pgb"
printf 'SELECT lock_named_fenced(:name);\nSELECT unlock_named(:name);\n' >"$DIR/fenced.pgb"
chmod o+r "$DIR"/*.pgb

measure psql_ -c 'SELECT 1' >/dev/null   # let the set-up session's file appear first
log "measuring (each line is two sessions under callgrind)"
printf '\n| measurement | instructions per pair |\n|---|---:|\n'
row() { # row LABEL DIVISOR SMALL-CMD... -- LARGE-CMD...
    local label=$1 div=$2; shift 2
    local small=() large=()
    while [ "$1" != -- ]; do small+=("$1"); shift; done; shift
    large=("$@")
    local a b
    a=$(measure "${small[@]}"); b=$(measure "${large[@]}")
    printf '| %s | %s |\n' "$label" "$(( (b - a) / div ))"
}
for c in "empty loop|length(name) > 0" \
         "built-in pair, precomputed key|pg_try_advisory_lock(k) AND pg_advisory_unlock(k)" \
         "try_lock_named + unlock_named|try_lock_named(name) AND unlock_named(name)" \
         "try_lock_named_fenced + unlock_named|try_lock_named_fenced(name) IS NOT NULL AND unlock_named(name)"; do
    row "repeated names: ${c%%|*}" 20000 repeated loop1 "${c#*|}" -- repeated loop3 "${c#*|}"
done
for c in "empty loop|length(name) > 0" \
         "built-in pair|pg_try_advisory_lock(k) AND pg_advisory_unlock(k)" \
         "try_lock_named + unlock_named|try_lock_named(name) AND unlock_named(name)"; do
    row "never-seen names: ${c%%|*}" 40000 never_seen new1 "${c#*|}" -- never_seen new3 "${c#*|}"
done
row "pgbench transaction (server side): built-in" 2000 pgbench_ 1000 "$DIR/builtin.pgb" -- pgbench_ 3000 "$DIR/builtin.pgb"
row "pgbench transaction (server side): lock_named" 2000 pgbench_ 1000 "$DIR/named.pgb" -- pgbench_ 3000 "$DIR/named.pgb"
row "pgbench transaction (server side): lock_named_fenced" 2000 pgbench_ 1000 "$DIR/fenced.pgb" -- pgbench_ 3000 "$DIR/fenced.pgb"
