#!/usr/bin/env bash
# The Python package clients/python (pg-named-locks) as a user gets it: installed with
# pip into a FRESH virtual environment, then its pytest suite (psycopg sync and async,
# SQLAlchemy asyncio) against a real, preloaded PostgreSQL 18 on 127.0.0.1:23418.
#   scripts/python-client-tests.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$ROOT/scripts/server.sh"

DIR=$RUN/python-client
PORT=23418
DB=named_locks_python
BINDIR=$(pg_bindir 18)
PYVENV=$RUN/python-client-venv
PY=$PYVENV/bin/python
export PGNL_DSN="postgresql://postgres@127.0.0.1:$PORT/$DB"
export PGNL_EXPECT_INSTALLED=1
# Root would otherwise leave root-owned __pycache__ directories in the work tree.
export PYTHONDONTWRITEBYTECODE=1
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

stop_server_on_exit "python client" "$DIR"

# The install runs while the extension builds: they need the network and the CPU.
log "python client: a fresh virtual environment in $PYVENV"
step="python3 -m venv $PYVENV"
rm -rf "$PYVENV"
python3 -m venv "$PYVENV"
cd "$ROOT"
(
    timeout -k 5 240 "$PYVENV/bin/pip" install -q './clients/python[psycopg,sqlalchemy]' &&
        timeout -k 5 120 "$PYVENV/bin/pip" install -q pytest==8.3.3 pytest-asyncio==0.24.0 pytest-timeout==2.3.1
) >"$RUN/python-client-pip.log" 2>&1 &
pip_pid=$!

log "python client: installing the extension into PostgreSQL 18"
step="installing the extension into PostgreSQL 18 (log: $RUN/install-pg18.log)"
install_extension 18

step="pip install './clients/python[psycopg,sqlalchemy]' (log: $RUN/python-client-pip.log)"
if wait "$pip_pid"; then
    check_ok "pip install './clients/python[psycopg,sqlalchemy]' into a fresh virtual environment"
else
    cat "$RUN/python-client-pip.log"
    exit 1
fi
step="the installed package imports (pg_named_locks, .psycopg, .sqlalchemy)"
(cd / && "$PY" -c 'import pg_named_locks, pg_named_locks.psycopg, pg_named_locks.sqlalchemy')

client_server "$DIR" "$PORT" "$DB"

status=0
log "python client: pytest (clients/python/tests)"
# Run from the package folder (its pyproject.toml configures pytest) with the tests'
# folder, not src/, on sys.path: the tests import the installed package. Each test has
# its own limit (pyproject.toml); `timeout` bounds the whole run should one hang outside
# a test.
cd "$ROOT/clients/python"
timeout -k 10 150 "$PY" -m pytest tests -p no:cacheprovider -q -rs 2>&1 | tee "$RUN/python-client-pytest.log" \
    || status=1
if [ "$status" = 0 ]; then
    check_ok "python client: $(grep -E '[0-9]+ passed' "$RUN/python-client-pytest.log" | tail -n 1)"
else
    check_fail "python client: pytest (log: $RUN/python-client-pytest.log)"
fi
exit $status
