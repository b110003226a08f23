#!/usr/bin/env bash
# The Python examples (examples/python, on the package clients/python installed into
# .deps/venv) and the monitoring examples (examples/monitoring) against a real, preloaded
# PostgreSQL 18 on 127.0.0.1:23018: the pytest suites, then the two examples run once
# from the command line, as a user would. The package's own suite, in a fresh virtual
# environment, is scripts/python-client-tests.sh.
#   scripts/client-tests.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$ROOT/scripts/server.sh"

DIR=$RUN/clients
PORT=23018
DB=named_locks_clients
BINDIR=$(pg_bindir 18)
export PGNL_DSN="postgresql://postgres@127.0.0.1:$PORT/$DB"
export PGNL_PSQL=$BINDIR/psql
# Root would otherwise leave root-owned __pycache__ directories in the work tree.
export PYTHONDONTWRITEBYTECODE=1
PY=$VENV/bin/python

# A set-up step that fails ends the script (set -e); the exit trap then names the step,
# so that a red run says which one without its log.
stop_server_on_exit clients "$DIR"

step="the Python packages in $VENV (scripts/setup.sh installs them)"
"$PY" -c 'import sqlalchemy, asyncpg, pytest_asyncio, yaml'
# The examples import the package as a user's code does. Its dependencies are pinned in
# examples/python/requirements.txt, so this adds only the package itself (rebuilt from
# the work tree on every run).
step="pip install './clients/python[sqlalchemy]' into $VENV (log: $RUN/clients-pip.log)"
mkdir -p "$RUN"
(cd "$ROOT" && PIP_ROOT_USER_ACTION=ignore timeout -k 5 240 "$PY" -m pip install -q --disable-pip-version-check \
    './clients/python[sqlalchemy]') >"$RUN/clients-pip.log" 2>&1 || { cat "$RUN/clients-pip.log"; exit 1; }
(cd / && "$PY" -c 'import pg_named_locks.sqlalchemy')

log "clients: installing the extension into PostgreSQL 18"
step="installing the extension into PostgreSQL 18 (log: $RUN/install-pg18.log)"
install_extension 18
client_server "$DIR" "$PORT" "$DB"

status=0
cd "$ROOT"
log "clients: pytest (examples/python/tests, examples/monitoring)"
# Each test has its own 120 s limit; `timeout` bounds the whole run should one hang
# outside a test. The loop-scope option only silences pytest-asyncio's notice that the
# default will change: every test and fixture here is function-scoped.
timeout -k 10 600 "$PY" -m pytest examples/python/tests examples/monitoring \
    -p no:cacheprovider -q --timeout=120 -o asyncio_default_fixture_loop_scope=function \
    || status=1

log "clients: examples from the command line"
out=$(timeout -k 5 120 "$PY" examples/python/singleton_job.py --dsn "$PGNL_DSN" --workers 4 2>&1) && rc=0 || rc=$?
echo "$out"
if [ $rc = 0 ] && [ "$(grep -c ': running ' <<<"$out")" = 1 ] \
    && [ "$(grep -c 'already running' <<<"$out")" = 3 ]; then
    check_ok "singleton_job.py: 4 workers, one ran the job, three skipped it"
else
    check_fail "singleton_job.py (exit $rc)"; status=1
fi

out=$(timeout -k 5 120 "$PY" examples/python/transfer.py --dsn "$PGNL_DSN" --workers 4 --transfers 200 2>&1) && rc=0 || rc=$?
echo "$out"
if [ $rc = 0 ] && grep -q 'total conserved' <<<"$out"; then
    check_ok "transfer.py: 200 concurrent transfers, total conserved"
else
    check_fail "transfer.py (exit $rc)"; status=1
fi

out=$(psql_ -d "$DB" -f examples/monitoring/who_blocks_whom.sql 2>&1) && rc=0 || rc=$?
if [ $rc = 0 ] && grep -q 'waiter_pid' <<<"$out"; then
    check_ok "who_blocks_whom.sql runs in psql"
else
    echo "$out"; check_fail "who_blocks_whom.sql (exit $rc)"; status=1
fi
exit $status
