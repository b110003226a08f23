# Start/stop a throw-away PostgreSQL server as $RUNAS. Source after common.sh.
#   server_start VERSION DIR PORT [extra postgresql.conf lines...]
#   server_stop DIR
# DIR gets data/, sock/ and server.log; the server listens on loopback and DIR/sock only.

server_start() {
    local version=$1 dir=$2 port=$3; shift 3
    local bindir; bindir=$(pg_bindir "$version")
    server_stop "$dir"
    fresh_runtime_dir "$dir"
    as_runas mkdir -p "$dir/sock"
    as_runas "$bindir/initdb" -D "$dir/data" -U postgres -E UTF8 --locale=C -A trust >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log"; return 1; }
    {
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $port"
        echo "unix_socket_directories = '$dir/sock'"
        echo "max_prepared_transactions = 10"
        echo "deadlock_timeout = '100ms'"
        for line in "$@"; do echo "$line"; done
    } | as_runas tee -a "$dir/data/postgresql.conf" >/dev/null
    as_runas "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
        || { cat "$dir/server.log"; return 1; }
}

server_stop() {
    local dir=$1
    if [ -f "$dir/data/postmaster.pid" ]; then
        local pid; pid=$(head -n 1 "$dir/data/postmaster.pid")
        # SIGINT = fast shutdown: disconnects clients, no waiting for them.
        kill -INT "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
}

# For a suite with one server of its own (the client suites): `step` names the set-up
# step in progress, and on exit a failed one (set -e) is reported and the server stopped.
#   stop_server_on_exit LABEL DIR
stop_server_on_exit() {
    SUITE_LABEL=$1 SUITE_DIR=$2
    step=""
    trap _suite_on_exit EXIT
}
_suite_on_exit() {
    local rc=$?
    [ "$rc" = 0 ] || [ -z "$step" ] || check_fail "$SUITE_LABEL set-up: $step (exit $rc)"
    server_stop "$SUITE_DIR"
}

# A preloaded PostgreSQL 18 in DIR on PORT with a database DB that has the extension
# (install_extension 18 first), and psql_ to reach it over the unix socket.
#   client_server DIR PORT DB
client_server() {
    local dir=$1 port=$2 db=$3
    step="starting PostgreSQL 18 on port $port (log: $dir/server.log)"
    server_start 18 "$dir" "$port" "shared_preload_libraries = 'pg_named_locks'"
    CLIENT_SERVER_SOCK=$dir/sock CLIENT_SERVER_PORT=$port
    step="CREATE DATABASE $db"
    psql_ -d postgres -c "CREATE DATABASE $db"
    step="CREATE EXTENSION pg_named_locks"
    psql_ -d "$db" -c "CREATE EXTENSION pg_named_locks"
    step=""
}
psql_() {
    "$(pg_bindir 18)/psql" -X -q -v ON_ERROR_STOP=1 -h "$CLIENT_SERVER_SOCK" -p "$CLIENT_SERVER_PORT" -U postgres "$@"
}
