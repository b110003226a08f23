//! User-facing errors and warnings that more than one module raises, with their
//! SQLSTATEs and hints.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

/// The most elements one `_many` call takes (`lock_many`, `unlock_many`, …). Far more
/// than any shared lock table holds, so a real call never meets it; it bounds what one
/// call allocates per element (PostgreSQL's arrays go up to 134 million elements).
pub const MAX_NAMES_PER_CALL: usize = 1_000_000;

/// Emit a WARNING or NOTICE without letting a pending interrupt turn it into an ERROR
/// (see `pg::holding_interrupts`): our warnings come in the middle of bookkeeping, some
/// of them right after a lock was granted.
pub fn warn(report: ErrorReport, level: PgLogLevel) {
    crate::pg::holding_interrupts(|| report.report(level));
}

#[cold]
#[inline(never)]
pub fn too_many_names(n: usize) -> ! {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        format!("too many lock names in one call: {n}, at most {MAX_NAMES_PER_CALL} are allowed"),
        "pg_named_locks",
    )
    .set_hint("Lock fewer names at once; no shared lock table holds that many locks.")
    .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// A Rust allocation failed: an ordinary out-of-memory ERROR, as PostgreSQL raises for
/// a failed palloc, instead of the abort (and cluster-wide restart) of an infallible one.
#[cold]
#[inline(never)]
pub fn out_of_memory(bytes: usize) -> ! {
    ErrorReport::new(PgSqlErrorCode::ERRCODE_OUT_OF_MEMORY, "out of memory", "pg_named_locks")
        .set_detail(format!("Failed on a request of {bytes} bytes."))
        .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// A vector with room for `n` elements, or the out-of-memory ERROR.
pub fn vec_with_capacity<T>(n: usize) -> Vec<T> {
    let mut v = Vec::new();
    if v.try_reserve_exact(n).is_err() {
        out_of_memory(n.saturating_mul(size_of::<T>()));
    }
    v
}

#[cold]
#[inline(never)]
pub fn not_utf8() -> ! {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
        "lock name is not valid UTF-8 after conversion",
        "pg_named_locks",
    )
    .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}
