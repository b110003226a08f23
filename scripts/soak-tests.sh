#!/usr/bin/env bash
# Randomized soak with fault injection (pg_test/python/soak): SOAK_SESSIONS sessions (16)
# run random named-lock operations for SOAK_SECONDS (60) against a preloaded server while
# a chaos thread cancels, terminates and disconnects them; every session keeps a model of
# what it holds, checked against pg_locks, advisory_locks_v, the registry and
# named_lock_stats at quiesce points and at the end. Then the server log is checked for
# crashes and assertion failures.
#   scripts/soak-tests.sh VERSION          (18 or 15)
#   SOAK_SEED=N scripts/soak-tests.sh 18   (replay the operation choices of a run)
# Server: 127.0.0.1:27100+V, as $RUNAS, in $RUN/soak-pgV, stopped on exit.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$ROOT/scripts/server.sh"

V=${1:?usage: scripts/soak-tests.sh VERSION}
pg_config_for "$V" >/dev/null
DIR=$RUN/soak-pg$V
PORT=$((27100 + V))
SECS=${SOAK_SECONDS:-60}
SESSIONS=${SOAK_SESSIONS:-16}
SEED=${SOAK_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
SEED=$((SEED % 2147483648))
PY=$VENV/bin/python
[ -x "$PY" ] || { check_fail "soak pg$V: no Python venv at $VENV (run scripts/setup.sh)"; exit 1; }

log "PostgreSQL $V: installing the extension"
install_extension "$V"

log "PostgreSQL $V: soak server on 127.0.0.1:$PORT"
trap 'server_stop "$DIR"' EXIT
server_start "$V" "$DIR" "$PORT" \
    "shared_preload_libraries = 'pg_named_locks'" \
    "max_connections = $((SESSIONS + 40))"

log "PostgreSQL $V: soak, $SESSIONS sessions, ${SECS} s, seed $SEED (replay: SOAK_SEED=$SEED)"
REPORT=$DIR/report.json
rc=0
# The driver stops itself; `timeout` is the hard bound should it hang anyway.
timeout -k 5 $((${SECS%.*} + 60)) "$PY" "$ROOT/pg_test/python/soak/soak.py" \
    --host 127.0.0.1 --port "$PORT" --seconds "$SECS" --sessions "$SESSIONS" --seed "$SEED" \
    --report "$REPORT" || rc=$?

status=0
if [ -s "$REPORT" ]; then
    # one line per invariant: ok|fail <TAB> text
    while IFS=$'\t' read -r verdict text; do
        if [ "$verdict" = ok ]; then check_ok "soak pg$V: $text"; else check_fail "soak pg$V: $text"; status=1; fi
    done < <("$PY" - "$REPORT" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
for k, v in r["invariants"].items():
    ok = v["checks"] > 0 and v["violations"] == 0
    print(f"{'ok' if ok else 'fail'}\t{v['description']} ({v['checks']} checks, {v['violations']} violations)")
print(f"{'fail' if r['fatal'] else 'ok'}\tthe driver ran to the end ({len(r['fatal'])} fatal errors)")
EOF
    )
else
    check_fail "soak pg$V: the driver wrote no report (exit $rc)"
    status=1
fi
if [ $rc -ne 0 ] && [ $status -eq 0 ]; then
    check_fail "soak pg$V: the driver exited with $rc"
    status=1
fi

# Terminations by pg_terminate_backend log "terminating connection due to administrator
# command" (FATAL) and are expected; crashes and failed assertions are not.
log_check() { # log_check WHAT REGEX
    local hits
    hits=$(grep -E -i -c "$2" "$DIR/server.log" || true)
    if [ "$hits" = 0 ]; then
        check_ok "soak pg$V: server log has no $1"
    else
        check_fail "soak pg$V: server log has $hits lines of $1:"
        grep -E -i "$2" "$DIR/server.log" | head -n 5
        status=1
    fi
}
log_check "PANIC" 'PANIC'
log_check "TRAP" 'TRAP'
log_check "backend terminated by a signal" 'terminated by signal|server process .* was terminated'
log_check "crash recovery" 'terminating any other active server processes|exited with exit code [^01]|database system was interrupted'
log_check "assertion failures" 'assertion|assert failed|panicked at'
if "$(pg_bindir "$V")/pg_isready" -q -h 127.0.0.1 -p "$PORT" -t 5; then
    check_ok "soak pg$V: server still accepts connections"
else
    check_fail "soak pg$V: server no longer accepts connections"
    status=1
fi
exit $status
