#!/usr/bin/env bash
# Runs every test on every supported PostgreSQL (default: 18 and 15):
#   1. pg_regress + pg_isolation_regress suites in pg_test/ (scripts/sql-tests.sh)
#   2. `cargo pgrx test`: #[pg_test] unit tests and the multi-session tests in src/
# Keeps going after a failure so one run reports everything; exits non-zero if anything
# failed. Set PG_VERSIONS="18" to run one version only.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

"$ROOT/scripts/setup.sh"
cd "$ROOT"

passed=0
failed=0
failures=()
summary() {
    # Counts are of individual tests, parsed from each runner's own closing lines.
    local name=$1 logf=$2 rc=$3 p=0 f=0
    p=$( (grep -hoE 'test result: [a-zA-Z]+\. [0-9]+ passed' "$logf" || true) | awk '{s+=$4} END {print s+0}')
    f=$( (grep -hoE '[0-9]+ failed;' "$logf" || true) | awk '{s+=$1} END {print s+0}')
    # pg_regress / pg_isolation_regress: "# All N tests passed." (18) or " All N tests passed." (15),
    # or "N of M tests failed."
    p=$((p + $( (grep -hoE 'All [0-9]+ tests passed' "$logf" || true) | awk '{s+=$2} END {print s+0}') ))
    local rf; rf=$( (grep -hoE '[0-9]+ of [0-9]+ tests failed' "$logf" || true) | awk '{s+=$1; t+=$3} END {print s+0, t+0}')
    f=$((f + ${rf% *})); p=$((p + ${rf#* } - ${rf% *}))
    if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi
    passed=$((passed + p)); failed=$((failed + f))
    [ "$rc" = 0 ] || failures+=("$name (log: $logf)")
    printf '%-40s %s passed, %s failed\n' "$name" "$p" "$f" >>"$RUN/summary.txt"
}

mkdir -p "$RUN"
: >"$RUN/summary.txt"
for V in $PG_VERSIONS; do
    rc=0
    "$ROOT/scripts/sql-tests.sh" "$V" 2>&1 | tee "$RUN/sql-tests-pg$V.log" || rc=$?
    summary "pg$V pg_regress+isolation" "$RUN/sql-tests-pg$V.log" "$rc"

    log "PostgreSQL $V: cargo pgrx test"
    fresh_runtime_dir "$RUN/pgrx-test-pg$V"
    rc=0
    cargo pgrx test "pg$V" --runas "$RUNAS" --pgdata "$RUN/pgrx-test-pg$V" 2>&1 \
        | tee "$RUN/pgrx-test-pg$V.log" || rc=$?
    summary "pg$V cargo pgrx test" "$RUN/pgrx-test-pg$V.log" "$rc"
done

log "summary"
cat "$RUN/summary.txt"
for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "tests: $passed passed, $failed failed"
[ "$failed" = 0 ] && [ ${#failures[@]} = 0 ]
