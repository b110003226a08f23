#!/usr/bin/env bash
# Regression tests of the defects an independent review found (issue 15), with real
# servers and real sessions (pytest, pg_test/python/robustness):
#   - names across database encodings: UTF8, LATIN1, EUC_JP and SQL_ASCII databases of
#     one cluster (the registry is cluster-wide);
#   - a cancel raised through the lock manager's WARNING in unlock_many (memory leak);
#   - the _many functions on a server whose memory is limited (ulimit -v): a clean ERROR,
#     never an abort that restarts the cluster. Those servers are started by the tests.
#   scripts/robustness-tests.sh VERSION
# Server: 127.0.0.1:26200+V (main, preloaded); the memory-limited ones use 26300+V.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$ROOT/scripts/server.sh"

V=${1:?usage: scripts/robustness-tests.sh VERSION}
DIR=$RUN/robust-pg$V
SRV=$DIR/server
PORT=$((26200 + V))
BINDIR=$(pg_bindir "$V")

log "PostgreSQL $V: installing the extension"
install_extension "$V"

mkdir -p "$DIR"
server_start "$V" "$SRV" "$PORT" "shared_preload_libraries = 'pg_named_locks'"
trap 'server_stop "$SRV"; server_stop "$DIR/limited"' EXIT
psql=("$BINDIR/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres -v ON_ERROR_STOP=1)
"${psql[@]}" -d postgres \
    -c "CREATE DATABASE robust_utf8 ENCODING 'UTF8' TEMPLATE template0" \
    -c "CREATE DATABASE robust_latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0" \
    -c "CREATE DATABASE robust_eucjp ENCODING 'EUC_JP' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0" \
    -c "CREATE DATABASE robust_sqlascii ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
for db in robust_utf8 robust_latin1 robust_eucjp robust_sqlascii; do
    "${psql[@]}" -d "$db" -c "CREATE EXTENSION pg_named_locks"
done

log "PostgreSQL $V: robustness tests"
mkdir -p "$DIR/limited"
if [ "$(id -u)" = 0 ]; then chown "$RUNAS" "$DIR/limited"; fi
cd "$DIR"
PYTHONDONTWRITEBYTECODE=1 ROBUST_HOST=127.0.0.1 ROBUST_PORT=$PORT ROBUST_PG_VERSION=$V \
    ROBUST_BINDIR=$BINDIR ROBUST_LIMITED_DIR=$DIR/limited ROBUST_LIMITED_PORT=$((26300 + V)) \
    ROBUST_RUNAS=$RUNAS ROBUST_SERVER_LOG=$SRV/server.log \
    timeout -k 10 420 "$VENV/bin/python" -m pytest "$ROOT/pg_test/python/robustness" \
    -p no:cacheprovider -q --timeout=200 "${@:2}"
