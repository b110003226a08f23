#!/usr/bin/env bash
# Property and hostile-input tests: pytest + hypothesis (pg_test/python/properties)
# against a real preloaded server. Generated names (Unicode of every kind, up to 1 MB),
# arrays and intervals; keys checked against the md5 contract, every lock round-tripped
# through pg_locks, the view and the registry. Examples are derandomized: the same
# inputs on every run, so a CI failure reproduces locally.
#   scripts/property-tests.sh VERSION
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$ROOT/scripts/server.sh"

V=$1
DIR=$RUN/props-pg$V
SRV=$DIR/server
PORT=$((26000 + V))
BINDIR=$(pg_bindir "$V")

log "PostgreSQL $V: installing the extension"
install_extension "$V"

mkdir -p "$DIR"
server_start "$V" "$SRV" "$PORT" "shared_preload_libraries = 'pg_named_locks'"
trap 'server_stop "$SRV"' EXIT
"$BINDIR/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 \
    -c "CREATE DATABASE props" -c "\\c props" -c "CREATE EXTENSION pg_named_locks"

log "PostgreSQL $V: property tests"
# Run from the run directory, so nothing (caches, hypothesis files) lands in the tree;
# `timeout` bounds the whole run even if a server call hung past its statement_timeout.
cd "$DIR"
PYTHONDONTWRITEBYTECODE=1 PROPS_HOST=127.0.0.1 PROPS_PORT=$PORT PROPS_DB=props PROPS_PG_VERSION=$V \
    timeout -k 10 300 "$VENV/bin/python" -m pytest "$ROOT/pg_test/python/properties" \
    -p no:cacheprovider -q --timeout=150
