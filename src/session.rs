//! The per-session cap: `pg_named_locks.max_locks_per_session` distinct advisory locks.
//!
//! Checked before a call touches the shared lock table, so one runaway session fails
//! with 53400 instead of exhausting the lock table (53200) for everybody. A backend-local
//! count of grants is an upper bound on what is held (releases at commit and by the
//! built-ins are not seen); only when it reaches the cap is the exact number counted from
//! a lock-table snapshot, and the estimate reset to it.

use std::cell::Cell;

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::guc;
use crate::lockmgr::{self, Key, Mode};

thread_local! {
    static ESTIMATE: Cell<usize> = const { Cell::new(0) };
}

pub fn note_granted() {
    ESTIMATE.set(ESTIMATE.get() + 1);
}

/// Ok when taking `key` keeps this session within the cap.
pub fn check_cap(key: Key, mode: Mode) -> Result<(), ErrorReport> {
    let cap = guc::MAX_LOCKS_PER_SESSION.get();
    if cap <= 0 || ESTIMATE.get() < cap as usize {
        return Ok(());
    }
    let held = lockmgr::advisory_locks_held();
    ESTIMATE.set(held);
    if held < cap as usize
        || lockmgr::held_by_me(key, mode)
        || lockmgr::held_by_me(key, other(mode))
    {
        return Ok(());
    }
    Err(ErrorReport::new(
        PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
        format!("this session already holds {held} advisory locks, the most pg_named_locks.max_locks_per_session allows"),
        "pg_named_locks",
    )
    .set_detail("The lock was not requested, so the shared lock table was not touched.")
    .set_hint("Release locks you no longer need (unlock_named, or end the transaction for xact_ locks), or ask a superuser to raise pg_named_locks.max_locks_per_session (0 = no cap)."))
}

fn other(mode: Mode) -> Mode {
    match mode {
        Mode::Exclusive => Mode::Shared,
        Mode::Shared => Mode::Exclusive,
    }
}
