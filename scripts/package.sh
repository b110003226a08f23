#!/usr/bin/env bash
# Release packages, one per supported PostgreSQL major, in one command:
#   scripts/package.sh            -> dist/pg_named_locks-<version>-pg<NN>-<os>-<arch>.tar.gz
#   scripts/package.sh --freeze   also freezes this version's install script as
#                                 sql/released/pg_named_locks--<version>.sql (see sql/README.md)
# PG_VERSIONS="18" limits the majors. Each archive holds a relocatable layout
#   lib/pg_named_locks.so  extension/pg_named_locks.control  extension/pg_named_locks--*.sql
# with install.sh and INSTALL; it needs no Rust and no pgrx on the target machine.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
umask 022   # archive members readable by everyone, whatever the caller's umask

FREEZE=0
for arg in "$@"; do
    case $arg in
        --freeze) FREEZE=1 ;;
        *) echo "usage: $0 [--freeze]" >&2; exit 2 ;;
    esac
done

EXT=pg_named_locks
VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n 1)
[ -n "$VERSION" ] || { echo "no version in Cargo.toml" >&2; exit 1; }
OS=$(uname -s | tr '[:upper:]' '[:lower:]')
ARCH=$(uname -m)
DIST=$ROOT/dist
STAMP=$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)
WORK=$RUN/package/build
mkdir -p "$DIST" "$WORK"
cd "$ROOT"

pg_major() { "$1" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/'; }

package_one() {
    local v=$1 pgc major stage name tree so control sqlf
    pgc=$(pg_config_for "$v")
    major=$(pg_major "$pgc")
    [ "$major" = "$v" ] || { echo "$pgc is PostgreSQL $major, expected $v" >&2; return 1; }
    name=$EXT-$VERSION-pg$v-$OS-$ARCH
    stage=$WORK/stage-pg$v
    tree=$WORK/$name
    log "PostgreSQL $v: cargo pgrx package (release)"
    rm -rf "$stage" "$tree"
    cargo pgrx package --pg-config "$pgc" --out-dir "$stage" >"$WORK/pgrx-package-pg$v.log" 2>&1 \
        || { cat "$WORK/pgrx-package-pg$v.log"; return 1; }

    # pgrx lays the files out under the absolute pkglibdir/sharedir of this machine's
    # pg_config; a package must not depend on where PostgreSQL lived on the build host.
    so=$(find "$stage" -type f -name "$EXT.so")
    control=$(find "$stage" -type f -name "$EXT.control")
    [ "$(wc -l <<<"$so")" = 1 ] && [ -n "$so" ] || { echo "expected one $EXT.so in $stage" >&2; return 1; }
    [ "$(wc -l <<<"$control")" = 1 ] && [ -n "$control" ] || { echo "expected one $EXT.control in $stage" >&2; return 1; }
    mkdir -p "$tree/lib" "$tree/extension"
    install -m 755 "$so" "$tree/lib/$EXT.so"
    install -m 644 "$control" "$tree/extension/"
    # the generated install script and, from sql/, the hand-written upgrade scripts
    while IFS= read -r sqlf; do
        install -m 644 "$sqlf" "$tree/extension/"
    done < <(find "$(dirname "$control")" -maxdepth 1 -type f -name "$EXT--*.sql")
    for sqlf in "$ROOT"/sql/"$EXT"--*--*.sql; do
        [ -e "$sqlf" ] || continue
        cmp -s "$sqlf" "$tree/extension/$(basename "$sqlf")" \
            || { echo "upgrade script $(basename "$sqlf") missing or different in the pgrx output" >&2; return 1; }
    done
    [ -f "$tree/extension/$EXT--$VERSION.sql" ] || { echo "no $EXT--$VERSION.sql generated" >&2; return 1; }
    grep -qx "default_version = '$VERSION'" "$tree/extension/$EXT.control" \
        || { echo "control file's default_version is not $VERSION" >&2; return 1; }

    {
        echo "$EXT $VERSION for PostgreSQL $v ($OS-$ARCH)"
        echo "built $(date -u +%Y-%m-%d) with pgrx $PGRX_VERSION against $("$pgc" --version)"
        echo "build host: $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"), $(ldd --version 2>/dev/null | head -n 1)"
    } >"$tree/BUILDINFO"
    write_install_sh "$v" >"$tree/install.sh"
    chmod 755 "$tree/install.sh"
    write_install_txt "$v" >"$tree/INSTALL"
    if [ -f "$ROOT/LICENSE" ]; then install -m 644 "$ROOT/LICENSE" "$tree/"; fi

    # the archive carries neither the builder's uid nor the build time (the commit's instead)
    tar --owner=0 --group=0 --numeric-owner --mtime="@$STAMP" --sort=name \
        -C "$WORK" -czf "$DIST/$name.tar.gz.tmp" "$name"
    mv -f "$DIST/$name.tar.gz.tmp" "$DIST/$name.tar.gz"
    echo "$DIST/$name.tar.gz"

    if [ "$FREEZE" = 1 ] && [ "$v" = "$FIRST" ]; then freeze "$tree/extension/$EXT--$VERSION.sql"; fi
}

# The frozen copy is the released install script: installing that version later (to
# test upgrades from it) must create exactly what the release did.
freeze() {
    local src=$1 dest=$ROOT/sql/released/$EXT--$VERSION.sql
    mkdir -p "$ROOT/sql/released"
    if [ -f "$dest" ]; then
        echo "$dest already exists: a released script is never rewritten (see sql/README.md)" >&2
        return 1
    fi
    cp "$src" "$dest"
    log "froze $dest"
}

write_install_sh() {
    local v=$1
    cat <<EOF
#!/bin/sh
# Installs $EXT $VERSION into a PostgreSQL $v installation.
#   ./install.sh [PG_CONFIG]       (default: \$PG_CONFIG, else pg_config on PATH)
# DESTDIR=/some/root ./install.sh stages below that root (for building OS packages).
set -eu
EXT=$EXT
MAJOR=$v
EOF
    cat <<'EOF'
here=$(cd "$(dirname "$0")" && pwd)
pgc=${1:-${PG_CONFIG:-pg_config}}
command -v "$pgc" >/dev/null 2>&1 || { echo "install.sh: pg_config not found: $pgc (pass its path)" >&2; exit 1; }
got=$("$pgc" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
if [ "$got" != "$MAJOR" ]; then
    echo "install.sh: this package is for PostgreSQL $MAJOR, but $pgc is $("$pgc" --version)" >&2
    exit 1
fi
libdir=${DESTDIR:-}$("$pgc" --pkglibdir)
extdir=${DESTDIR:-}$("$pgc" --sharedir)/extension
mkdir -p "$libdir" "$extdir"
# Copy next to the target, then rename: a running server that has the old library
# mapped keeps its copy instead of reading a file rewritten under it.
put() { # put SRC DIR MODE
    cp "$1" "$2/.$(basename "$1").new.$$"
    chmod "$3" "$2/.$(basename "$1").new.$$"
    mv -f "$2/.$(basename "$1").new.$$" "$2/$(basename "$1")"
    echo "  $2/$(basename "$1")"
}
echo "installing $EXT for PostgreSQL $MAJOR:"
put "$here/lib/$EXT.so" "$libdir" 755
for f in "$here"/extension/*; do put "$f" "$extdir" 644; done
echo "done. Then, in a database:  CREATE EXTENSION $EXT;"
echo "recommended in postgresql.conf (restart): shared_preload_libraries = '$EXT'"
EOF
}

write_install_txt() {
    local v=$1
    cat <<EOF
$EXT $VERSION for PostgreSQL $v ($OS-$ARCH)

Named advisory locks: lock by text, see who holds and waits for what by name.

Install (as a user who can write to PostgreSQL's directories, e.g. with sudo):

    ./install.sh /path/to/pg_config        # or PG_CONFIG=... ./install.sh

It copies lib/$EXT.so into \$(pg_config --pkglibdir) and extension/* into
\$(pg_config --sharedir)/extension, and refuses a pg_config of another major version.
On Debian/Ubuntu pass the versioned /usr/lib/postgresql/$v/bin/pg_config.

Then:

    # postgresql.conf (recommended; required for lock names on PostgreSQL 15/16), restart:
    shared_preload_libraries = '$EXT'

    CREATE EXTENSION $EXT;                 -- or ALTER EXTENSION $EXT UPDATE;
    SELECT lock_named('daily-report-job');

The library is built for Linux $ARCH with glibc (see BUILDINFO); on another platform,
build from source with cargo-pgrx $PGRX_VERSION.
EOF
}

FIRST=${PG_VERSIONS%% *}
if [ "$FREEZE" = 1 ] && [ -f "$ROOT/sql/released/$EXT--$VERSION.sql" ]; then
    echo "sql/released/$EXT--$VERSION.sql already exists: a released script is never rewritten (see sql/README.md)" >&2
    exit 1
fi
for v in $PG_VERSIONS; do
    package_one "$v"
done
