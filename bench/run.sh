#!/usr/bin/env bash
# Benchmark runner for pg_named_locks: builds and installs the extension, starts a
# dedicated PostgreSQL 18 (as the postgres user when run as root; 127.0.0.1 and a unix
# socket under .run/bench-server only), measures every contender and writes the results
# to bench/results/. See bench/README.md.
#
#   ./bench/run.sh              full run, release build (about 35 minutes)
#   ./bench/run.sh --smoke      tiny sizes, debug build, same code paths (CI; seconds)
#   ./bench/run.sh --help       all options
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
source "$ROOT/scripts/server.sh"

usage() {
    cat <<'USAGE'
usage: bench/run.sh [options]
  --smoke             tiny sizes, debug build, pgbench -t instead of -T (CI smoke run)
  --release | --debug build profile (default: release; --smoke defaults to debug)
  --duration S        seconds per pgbench run (default 10)
  --reps N            repetitions of every in-server measurement (default 5)
  --pgbench-reps N    repetitions of every pgbench run (default 3)
  --pairs N           lock+unlock pairs per in-server statement, a multiple of 1000
                      (default 1000000)
  --never-seen N      new names per never-seen statement (default 1000000)
  --holders N         sessions holding locks for the monitoring queries (default 10)
  --locks-per-holder N  locks each of them holds (default 1000)
  --port P            server port on 127.0.0.1 (default 27018, --smoke 27019)
  --out DIR           results directory (default bench/results, bench/results/smoke
                      for --smoke)
  --pin CPUS          run the server and every client on these CPUs only (taskset
                      syntax: 0 | 0,1 | 0-3); see "Noise" in bench/README.md
  --check-targets     exit with status 3 when a target fails (default: report only)
USAGE
}

SMOKE=0 PROFILE="" PORT="" OUT="" CHECK=0
PY_ARGS=()
while [ $# -gt 0 ]; do
    case $1 in
        --smoke) SMOKE=1 ;;
        --release) PROFILE=release ;;
        --debug) PROFILE=debug ;;
        --duration|--reps|--pgbench-reps|--pairs|--never-seen|--holders|--locks-per-holder|--pin)
            [ $# -ge 2 ] || { usage >&2; exit 2; }
            PY_ARGS+=("$1" "$2"); shift ;;
        --port) [ $# -ge 2 ] || { usage >&2; exit 2; }; PORT=$2; shift ;;
        --out) [ $# -ge 2 ] || { usage >&2; exit 2; }; OUT=$2; shift ;;
        --check-targets) CHECK=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
[ -n "$PROFILE" ] || { [ $SMOKE = 1 ] && PROFILE=debug || PROFILE=release; }
[ -n "$OUT" ] || { [ $SMOKE = 1 ] && OUT=$ROOT/bench/results/smoke || OUT=$ROOT/bench/results; }
[ -n "$PORT" ] || { [ $SMOKE = 1 ] && PORT=27019 || PORT=27018; }
[ $SMOKE = 1 ] && PY_ARGS+=(--smoke)
[ $CHECK = 1 ] && PY_ARGS+=(--check-targets)

# Smoke and full runs keep separate servers and logs (and ports, so a CI smoke run in
# another checkout does not collide with a full run here).
SUFFIX=$([ $SMOKE = 1 ] && echo -smoke || true)
DIR=$RUN/bench$SUFFIX-server     # data/, sock/, server.log (wiped at every start)
WORK=$RUN/bench$SUFFIX-work      # logs and generated pgbench scripts of the last run
BINDIR=$PG18_HOME/bin

# Prerequisites come from scripts/setup.sh; say so instead of failing obscurely.
for need in "$PG18_CONFIG" "$BINDIR/pgbench" "$BINDIR/psql"; do
    [ -x "$need" ] || { echo "missing $need: run ./scripts/setup.sh first" >&2; exit 1; }
done
cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION" \
    || { echo "cargo-pgrx $PGRX_VERSION not found: run ./scripts/setup.sh first" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }

# One run at a time per checkout: a second run would restart the first one's server and
# reinstall the library under it.
mkdir -p "$RUN"
exec 9>"$RUN/bench.lock"
if ! flock -n 9; then
    echo "another bench/run.sh is running in this checkout (pid $(cat "$RUN/bench.lock.pid" 2>/dev/null || echo '?')); try again when it ends" >&2
    exit 1
fi
echo $$ >"$RUN/bench.lock.pid"

START=$(date +%s)
rm -rf "$WORK"; mkdir -p "$WORK" "$OUT"

log "building and installing pg_named_locks ($PROFILE) into PostgreSQL 18 (log: $WORK/install.log)"
build=(cargo pgrx install --pg-config "$PG18_CONFIG")
[ "$PROFILE" = release ] && build+=(--release)
( cd "$ROOT" && timeout --foreground 2400 "${build[@]}" ) >"$WORK/install.log" 2>&1 9>&- \
    || { tail -n 40 "$WORK/install.log"; echo "build failed (full log: $WORK/install.log)" >&2; exit 1; }
BUILD_SECONDS=$(( $(date +%s) - START ))

cleanup() { server_stop "$DIR"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'echo "bench/run.sh: terminated (SIGTERM)" >&2; exit 143' TERM

log "starting PostgreSQL 18 on 127.0.0.1:$PORT (data in $DIR)"
CONF=(
    "shared_preload_libraries = 'pg_named_locks'"
    "pg_named_locks.max_names = 20000"
    "pg_named_locks.track_stats = on"
    "max_locks_per_transaction = 256"
    "shared_buffers = '512MB'"
    "max_connections = 100"
    "jit = off"
)
server_start 18 "$DIR" "$PORT" "${CONF[@]}" 9>&-   # the server must not inherit the lock

CONF_JSON=$(printf '%s\n' "${CONF[@]}")
rc=0
timeout --foreground 7200 python3 "$ROOT/bench/lib/bench.py" \
    --root "$ROOT" --bindir "$BINDIR" --host "$DIR/sock" --port "$PORT" \
    --work "$WORK" --out "$OUT" --profile "$PROFILE" --datadir "$DIR/data" \
    --build-seconds "$BUILD_SECONDS" --conf "$CONF_JSON" "${PY_ARGS[@]}" || rc=$?
log "benchmark finished in $(( $(date +%s) - START )) s (build included)"
exit $rc
