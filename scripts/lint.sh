#!/usr/bin/env bash
# Lint and format gates, in this order:
#   1. cargo fmt --check (settings: rustfmt.toml)
#   2. cargo clippy --all-targets -D warnings, once per PostgreSQL version (default 18 and
#      15; the [lints] table in Cargo.toml adds unsafe_op_in_unsafe_fn = deny)
#   3. the same two for the example crate in examples/rust (its own Cargo project), and
#      for the Rust clients' workspace in clients/rust (the pg-named-locks crate and the
#      pg-named-lock command; built in target/clients-rust, as scripts/rust-client-tests.sh)
#   4. ruff check over the Python in pg_test/, bench/, examples/ and clients/ (settings: ruff.toml)
# Prints one line per gate, "ok: <gate>" or "not ok: <gate>" with the gate's output under
# it; runs every gate and exits non-zero if any of them found something. Needs
# scripts/setup.sh first (pgrx-pg-sys finds pg_config through ~/.pgrx/config.toml, ruff
# is in .deps/venv). Starts no server and installs nothing.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

gates=0
failed=0
gate() {
    local what=$1 out
    shift
    gates=$((gates + 1))
    if out=$("$@" 2>&1); then
        check_ok "$what"
    else
        check_fail "$what"
        sed 's/^/    | /' <<<"$out"
        failed=$((failed + 1))
    fi
}
in_dir() { local d=$1; shift; (cd "$d" && "$@"); }

log "lint and format gates"
gate "cargo fmt --check" cargo fmt --check
for V in $PG_VERSIONS; do
    gate "cargo clippy pg$V (all targets, -D warnings)" \
        cargo clippy --all-targets --no-default-features --features "pg$V" -- -D warnings
done
gate "examples/rust: cargo fmt --check" in_dir examples/rust cargo fmt --check
gate "examples/rust: cargo clippy (all targets, -D warnings)" \
    in_dir examples/rust cargo clippy --all-targets -- -D warnings
gate "clients/rust: cargo fmt --check" in_dir clients/rust cargo fmt --all --check
gate "clients/rust: cargo clippy (workspace, all targets, -D warnings)" \
    in_dir clients/rust env CARGO_TARGET_DIR="$ROOT/target/clients-rust" \
    cargo clippy --workspace --all-targets -- -D warnings
gate "ruff check pg_test bench examples clients" "$VENV/bin/ruff" check --no-cache pg_test bench examples clients

if [ "$failed" = 0 ]; then
    echo "lint: $gates gates passed"
else
    echo "lint: $failed of $gates gates failed"
    exit 1
fi
