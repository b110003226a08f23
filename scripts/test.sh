#!/usr/bin/env bash
# Runs every test on every supported PostgreSQL (default: 18 and 15):
#   1. pg_regress + pg_isolation_regress suites in pg_test/ (scripts/sql-tests.sh)
#   2. the reliability suites (faults, hostile input, robustness, soak: scripts/*-tests.sh VERSION)
#   3. `cargo pgrx test`: #[pg_test] unit tests and the multi-session tests in src/
#   4. once: the examples, the installable clients and packaging (scripts/client-tests.sh,
#      scripts/python-client-tests.sh, scripts/rust-client-tests.sh,
#      scripts/package-tests.sh: archives and the Debian package)
# Keeps going after a failure so one run reports everything; exits non-zero if anything
# failed. Set PG_VERSIONS="18" to run one version only.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

"$ROOT/scripts/setup.sh"
cd "$ROOT"

passed=0
failed=0
failures=()     # "name (log: file)" of each failed suite
failed_logs=()  # its log, for the excerpt under the summary
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
    # pytest: "=== 12 passed, 1 failed, 2 errors in 3.4s ===" (its closing line only)
    local pl; pl=$(grep -hE '^=* ?[0-9]+ (passed|failed|error).* in [0-9.]+s' "$logf" || true)
    p=$((p + $( (grep -oE '[0-9]+ passed' <<<"$pl" || true) | awk '{s+=$1} END {print s+0}') ))
    f=$((f + $( (grep -oE '[0-9]+ (failed|errors?)' <<<"$pl" || true) | awk '{s+=$1} END {print s+0}') ))
    # shell checks: "ok: ..." / "not ok: ..."
    p=$((p + $(grep -c '^ok: ' "$logf" || true) ))
    f=$((f + $(grep -c '^not ok: ' "$logf" || true) ))
    if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi
    passed=$((passed + p)); failed=$((failed + f))
    [ "$rc" = 0 ] || { failures+=("$name (log: $logf)"); failed_logs+=("$logf"); }
    printf '%-40s %s passed, %s failed\n' "$name" "$p" "$f" >>"$RUN/summary.txt"
}

mkdir -p "$RUN"
: >"$RUN/summary.txt"
for V in $PG_VERSIONS; do
    rc=0
    "$ROOT/scripts/sql-tests.sh" "$V" 2>&1 | tee "$RUN/sql-tests-pg$V.log" || rc=$?
    summary "pg$V pg_regress+isolation" "$RUN/sql-tests-pg$V.log" "$rc"

    for suite in fault-tests property-tests robustness-tests soak-tests failover-tests; do
        [ -x "$ROOT/scripts/$suite.sh" ] || continue
        rc=0
        "$ROOT/scripts/$suite.sh" "$V" 2>&1 | tee "$RUN/$suite-pg$V.log" || rc=$?
        summary "pg$V $suite" "$RUN/$suite-pg$V.log" "$rc"
    done

    log "PostgreSQL $V: cargo pgrx test"
    fresh_runtime_dir "$RUN/pgrx-test-pg$V"
    rc=0
    cargo pgrx test "pg$V" --runas "$RUNAS" --pgdata "$RUN/pgrx-test-pg$V" 2>&1 \
        | tee "$RUN/pgrx-test-pg$V.log" || rc=$?
    summary "pg$V cargo pgrx test" "$RUN/pgrx-test-pg$V.log" "$rc"
done

# Clients, examples and packaging: version-independent or covering every version themselves.
for suite in client-tests python-client-tests rust-client-tests package-tests; do
    [ -x "$ROOT/scripts/$suite.sh" ] || continue
    rc=0
    "$ROOT/scripts/$suite.sh" 2>&1 | tee "$RUN/$suite.log" || rc=$?
    summary "$suite" "$RUN/$suite.log" "$rc"
done

# A failed suite's own words, right under the summary: CI often shows only the end of
# the output, and the log files are gone with the machine.
excerpt() {
    local logf=$1 lines
    lines=$(grep -aE '^not ok: |FAILED|[Ee]rror|ERROR|FATAL|[Cc]ould not|Traceback|[Pp]anic|[Pp]ermission denied|No such file|missing|exit [0-9]+' "$logf" | tail -n 8 || true)
    [ -n "$lines" ] || lines=$(tail -n 8 "$logf")
    sed 's/^/    | /' <<<"$lines" | cut -c1-200
}

log "summary"
cat "$RUN/summary.txt"
for i in "${!failures[@]}"; do
    echo "FAILED: ${failures[$i]}"
    excerpt "${failed_logs[$i]}"
done
echo "tests: $passed passed, $failed failed"
[ "$failed" = 0 ] && [ ${#failures[@]} = 0 ]
