#!/usr/bin/env bash
# Release packages, one per supported PostgreSQL major, in one command:
#   scripts/package.sh            -> dist/pg_named_locks-<version>-pg<NN>-<os>-<arch>.tar.gz
#   scripts/package.sh --freeze   also freezes this version's install script as
#                                 sql/released/pg_named_locks--<version>.sql (see sql/README.md)
# PG_VERSIONS="18" limits the majors. Each archive holds a relocatable layout
#   lib/pg_named_locks.so  extension/pg_named_locks.control  extension/pg_named_locks--*.sql
# with install.sh and INSTALL; it needs no Rust and no pgrx on the target machine.
# For PostgreSQL 15 it also builds, from the same files (no second compile), a Debian
# package for Debian's postgresql-15 (needs dpkg-deb; dpkg-shlibdeps from dpkg-dev):
#   dist/postgresql-15-pg-named-locks_<version>_<debian arch>.deb
# DEB_MAINTAINER="Name <address>" sets its Maintainer field.
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
DEB_MAINTAINER=${DEB_MAINTAINER:-"The $EXT developers <maintainers@pg-named-locks.invalid>"}
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

    if [ "$v" = 15 ]; then package_deb "$v" "$tree"; fi
    if [ "$FREEZE" = 1 ] && [ "$v" = "$FIRST" ]; then freeze "$tree/extension/$EXT--$VERSION.sql"; fi
}

# A Debian binary package for Debian's PostgreSQL $1, made from the archive's tree $2:
# Debian's name (postgresql-NN-<ext with - for _>) and paths (the versioned pkglibdir and
# sharedir of postgresql-NN), a copyright file and a changelog in /usr/share/doc, md5sums,
# Depends on postgresql-NN and on what dpkg-shlibdeps finds the library needs.
package_deb() {
    local v=$1 tree=$2 pgc pkg debver arch root libdir extdir docdir deb shlibs size f
    pgc=$(pg_config_for "$v")
    pkg=postgresql-$v-${EXT//_/-}
    # a semver pre-release (1.0.0-rc1) must sort before its release: 1.0.0~rc1
    debver=${VERSION/-/\~}
    arch=$(dpkg --print-architecture)
    libdir=/usr/lib/postgresql/$v/lib
    extdir=/usr/share/postgresql/$v/extension
    docdir=/usr/share/doc/$pkg
    # the package installs where Debian's server looks, which is what this pg_config says
    [ "$("$pgc" --pkglibdir)" = "$libdir" ] && [ "$("$pgc" --sharedir)/extension" = "$extdir" ] \
        || { echo "$pgc is not Debian's postgresql-$v layout ($libdir, $extdir)" >&2; return 1; }
    command -v dpkg-deb >/dev/null && command -v dpkg-shlibdeps >/dev/null \
        || { echo "the Debian package needs dpkg-deb and dpkg-shlibdeps (apt-get install dpkg-dev)" >&2; return 1; }
    log "PostgreSQL $v: Debian package $pkg $debver ($arch)"
    # dpkg-shlibdeps wants a source tree: debian/control, the files in debian/<package>
    rm -rf "$WORK/deb-pg$v"
    root=$WORK/deb-pg$v/debian/$pkg
    mkdir -p "$root/DEBIAN" "$root$libdir" "$root$extdir" "$root$docdir"
    # Debian ships shared objects stripped (as dh_strip does) and not executable
    strip --remove-section=.comment --remove-section=.note --strip-unneeded \
        -o "$root$libdir/$EXT.so" "$tree/lib/$EXT.so"
    chmod 644 "$root$libdir/$EXT.so"
    for f in "$tree"/extension/*; do install -m 644 "$f" "$root$extdir/"; done
    write_deb_copyright >"$root$docdir/copyright"
    write_deb_changelog "$v" "$pkg" "$debver" | gzip -9n >"$root$docdir/changelog.gz"
    chmod 644 "$root$docdir"/*

    printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$pkg" "$pkg" >"$WORK/deb-pg$v/debian/control"
    shlibs=$(cd "$WORK/deb-pg$v" && dpkg-shlibdeps -O -e"debian/$pkg$libdir/$EXT.so" 2>"$WORK/deb-pg$v/shlibdeps.log") \
        || { cat "$WORK/deb-pg$v/shlibdeps.log" >&2; return 1; }
    shlibs=${shlibs#shlibs:Depends=}
    size=$(du -sk --apparent-size "$root/usr" | cut -f1)
    {
        echo "Package: $pkg"
        echo "Version: $debver"
        echo "Architecture: $arch"
        echo "Maintainer: $DEB_MAINTAINER"
        echo "Installed-Size: $size"
        echo "Depends: postgresql-$v${shlibs:+, $shlibs}"
        echo "Section: database"
        echo "Priority: optional"
        echo "Description: named advisory locks for PostgreSQL $v"
        write_deb_description "$v"
    } >"$root/DEBIAN/control"
    (cd "$root" && find usr -type f | LC_ALL=C sort | xargs md5sum) >"$root/DEBIAN/md5sums"
    chmod 644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"
    find "$root" -type d -exec chmod 755 {} +
    find "$root" -exec touch -h -d "@$STAMP" {} +

    deb=$DIST/${pkg}_${debver}_$arch.deb
    rm -f "$deb"
    SOURCE_DATE_EPOCH=$STAMP dpkg-deb --root-owner-group -Zxz --build "$root" "$deb.tmp" >/dev/null
    mv -f "$deb.tmp" "$deb"
    echo "$deb"
}

# DEP-5 copyright file, from LICENSE
write_deb_copyright() {
    local holder
    holder=$(sed -n 's/^Copyright (c) *//p' "$ROOT/LICENSE" | head -n 1)
    cat <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: $EXT
Source: the $EXT source tree (built with scripts/package.sh)

Files: *
Copyright: ${holder:-The $EXT developers}
License: PostgreSQL

License: PostgreSQL
EOF
    # the license text, every line indented, blank lines as " ."
    sed -e '1{/^PostgreSQL License$/d}' "$ROOT/LICENSE" | sed -e '/./,$!d' \
        | sed -e 's/^[[:space:]]*$/./' -e 's/^/ /'
}

write_deb_changelog() {
    local v=$1 pkg=$2 debver=$3
    cat <<EOF
$pkg ($debver) unstable; urgency=medium

  * $EXT $VERSION for Debian's PostgreSQL $v, built by scripts/package.sh
    from the release build in the PostgreSQL $v archive.

 -- $DEB_MAINTAINER  $(LC_ALL=C date -u -R -d "@$STAMP")
EOF
}

write_deb_description() {
    local v=$1
    cat <<EOF
 pg_named_locks takes PostgreSQL advisory locks by name instead of by number:
 lock_named('daily-report-job') takes exactly the lock that
 pg_advisory_lock(named_lock_key('daily-report-job')) takes. Session and
 transaction locks, shared and exclusive, timeouts, fencing tokens, leases,
 and monitoring by name (advisory_locks_v, named_lock_stats).
 .
 This package is built for Debian's postgresql-$v. Add pg_named_locks to
 shared_preload_libraries and restart the cluster (on PostgreSQL 15 the name
 registry needs it; locking works without), then run
 CREATE EXTENSION pg_named_locks in a database.
EOF
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
