#!/usr/bin/env bash
# The Rust clients (clients/rust: the pg-named-locks crate and the pg-named-lock command)
# against a real, preloaded PostgreSQL 18 on 127.0.0.1:23318:
#   1. the README's install command, `cargo install --path clients/rust`, into a scratch root;
#   2. `cargo test` of the workspace: unit tests, doc tests, the crate's live tests and the
#      command's tests (exit codes, environment, contention, lost connection, signals,
#      leases, status/stats/key), with PGNL_TEST_DSN pointing at the server;
#   3. the installed command run the way cron runs it (a bare environment, two runs of one
#      crontab line at once: one runs the job, the other exits 75).
# Prints "ok: ..." / "not ok: ..." lines and exits non-zero if any check failed.
#   scripts/rust-client-tests.sh
# Builds in its own target directory (target/clients-rust; PGNL_RUST_TARGET to change), so
# it neither disturbs nor waits for the extension's build.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$ROOT/scripts/server.sh"

SRV=$RUN/rust-clients
PORT=23318
DB=named_locks_rust
BINDIR=$(pg_bindir 18)
INSTALL_ROOT=$RUN/rust-clients-install
LOGS=$RUN/rust-clients-logs
BIN=$INSTALL_ROOT/bin/pg-named-lock
export CARGO_TARGET_DIR=${PGNL_RUST_TARGET:-$ROOT/target/clients-rust}
export PGNL_TEST_DSN="host=127.0.0.1 port=$PORT user=postgres dbname=$DB"
export PGNL_TEST_SOCKET_DIR=$SRV/sock

# A set-up step that fails ends the script (set -e); the exit trap then names the step.
stop_server_on_exit "rust clients" "$SRV"

rm -rf "$LOGS" && mkdir -p "$LOGS"

log "rust clients: installing the extension into PostgreSQL 18"
step="installing the extension into PostgreSQL 18 (log: $RUN/install-pg18.log)"
install_extension 18
client_server "$SRV" "$PORT" "$DB"

status=0
cd "$ROOT"

# ---------------------------------------------------------------- 1. install
log "rust clients: cargo install --path clients/rust"
rm -rf "$INSTALL_ROOT"
rc=0
# The README's command as written; where it installs is cargo's own setting
# (CARGO_INSTALL_ROOT, instead of the user's ~/.cargo/bin).
CARGO_INSTALL_ROOT=$INSTALL_ROOT timeout -k 10 900 cargo install --path clients/rust >"$LOGS/install.log" 2>&1 || rc=$?
if [ "$rc" = 0 ] && [ -x "$BIN" ] && "$BIN" --version | grep -q '^pg-named-lock '; then
    check_ok "cargo install --path clients/rust installs pg-named-lock ($("$BIN" --version))"
else
    check_fail "cargo install --path clients/rust (exit $rc, log: $LOGS/install.log)"
    tail -n 30 "$LOGS/install.log"
    exit 1
fi

# ---------------------------------------------------------------- 2. cargo test
log "rust clients: cargo test (clients/rust workspace)"
rc=0
timeout -k 10 600 cargo test --locked --no-fail-fast --manifest-path clients/rust/Cargo.toml >"$LOGS/test.log" 2>&1 || rc=$?
# cargo's own closing lines ("test result: ok. N passed") are counted by scripts/test.sh
grep -E '^test |test result:|panicked' "$LOGS/test.log" || true
passed=$(grep -oE 'test result: [a-zA-Z]+\. [0-9]+ passed' "$LOGS/test.log" | awk '{s += $4} END {print s + 0}')
if [ "$rc" = 0 ]; then
    check_ok "cargo test: $passed tests passed (unit, doc, the crate's live tests, the command's tests)"
else
    check_fail "cargo test (exit $rc, log: $LOGS/test.log)"
    tail -n 60 "$LOGS/test.log"
    status=1
fi

# ---------------------------------------------------------------- 3. as cron runs it
log "rust clients: a crontab line, run twice at once in cron's bare environment"
JOB=$LOGS/cron
mkdir -p "$JOB"
cat >"$JOB/export.sh" <<EOF
#!/bin/sh
# stands in for /usr/local/bin/export.sh: records its run, then works until told to stop
echo "ran \$PG_NAMED_LOCK_NAME token=\$PG_NAMED_LOCK_TOKEN" >>"$JOB/runs"
while [ ! -e "$JOB/go" ]; do sleep 0.05; done
EOF
chmod +x "$JOB/export.sh"
# the command part of:  */5 * * * * pg-named-lock run --no-wait nightly-export -- /usr/local/bin/export.sh
CRON_LINE="$BIN run --no-wait nightly-export -- $JOB/export.sh"
cron_run() {
    env -i PATH=/usr/bin:/bin SHELL=/bin/sh HOME="$JOB" LOGNAME=postgres \
        PGHOST=127.0.0.1 PGPORT="$PORT" PGUSER=postgres PGDATABASE="$DB" \
        timeout -k 5 60 /bin/sh -c "$CRON_LINE"
}
cron_run >"$JOB/first.out" 2>&1 &
first=$!
for _ in $(seq 1 200); do [ -s "$JOB/runs" ] && break; sleep 0.05; done
rc2=0
cron_run >"$JOB/second.out" 2>&1 || rc2=$?
touch "$JOB/go"
rc1=0
wait "$first" || rc1=$?
runs=$(wc -l <"$JOB/runs" 2>/dev/null || echo 0)
if [ "$rc1" = 0 ] && [ "$rc2" = 75 ] && [ "$runs" = 1 ] && grep -q '^ran nightly-export token=[0-9][0-9]*$' "$JOB/runs"; then
    check_ok "crontab line: the first run ran the job (with its fencing token), the overlapping one exited 75: $(cat "$JOB/second.out")"
else
    check_fail "crontab line: first exit $rc1 (want 0), second exit $rc2 (want 75), $runs runs (want 1)"
    cat "$JOB/first.out" "$JOB/second.out" "$JOB/runs" 2>/dev/null || true
    status=1
fi
rc=0
out=$(cron_run 2>&1) || rc=$?
if [ "$rc" = 0 ] && [ "$(wc -l <"$JOB/runs")" = 2 ]; then
    check_ok "crontab line: the next run after the job finished runs it again"
else
    check_fail "crontab line: the next run (exit $rc): $out"
    status=1
fi
out=$("$BIN" --dsn "$PGNL_TEST_DSN" status nightly-export 2>&1) && rc=0 || rc=$?
if [ "$rc" = 0 ] && grep -q '(0 rows)' <<<"$out"; then
    check_ok "pg-named-lock status: nightly-export is free after the runs"
else
    check_fail "pg-named-lock status nightly-export (exit $rc)"; echo "$out"; status=1
fi

exit $status
