//! What counts as a usable lock name (DESIGN.md §4). A lock function must never skip
//! locking silently: SQL NULL is an error (22004) instead of the built-ins' NULL result,
//! and an empty name is refused (22023) because it is almost always an unset variable.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

#[cold]
#[inline(never)]
fn fail(code: PgSqlErrorCode, message: String, hint: &str) -> ! {
    ErrorReport::new(code, message, "pg_named_locks").set_hint(hint).report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Any lock argument: SQL NULL is refused with 22004.
pub fn require_non_null<T>(value: Option<T>, what: &str) -> T {
    match value {
        Some(v) => v,
        None => null_argument(what),
    }
}

/// A name that is about to be hashed: NULL is refused, any text (even empty) hashes.
pub fn require_hashable<'a>(name: Option<&'a str>, what: &str) -> &'a str {
    require_non_null(name, what)
}

/// A name that is about to be locked: non-NULL and non-empty.
pub fn require_lockable<'a>(name: Option<&'a str>, what: &str) -> &'a str {
    let n = require_hashable(name, what);
    if n.is_empty() {
        empty_name(what);
    }
    n
}

// The error paths, out of line: the checks run on every lock call.
#[cold]
#[inline(never)]
fn null_argument(what: &str) -> ! {
    fail(
        PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
        format!("lock {what} must not be NULL"),
        "Named lock functions never skip locking silently; pass a non-NULL value.",
    )
}

#[cold]
#[inline(never)]
fn empty_name(what: &str) -> ! {
    fail(
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        format!("lock {what} must not be empty"),
        "An empty name usually means an unset variable; pass the resource's name.",
    )
}
