//! The per-session cap: `pg_named_locks.max_locks_per_session`.
//!
//! Checked before a named lock call requests a lock, so one runaway session fails with
//! 53400 instead of exhausting the shared lock table (53200) for everybody. The named
//! lock functions count the holds they take and release (transaction holds until the
//! transaction ends); this count bounds what they hold. Only when it reaches the cap is
//! the exact number of distinct advisory locks this session holds (of any origin) taken
//! from a lock-table snapshot, and a refusal is always based on that exact number.

use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::backend::BackendLocal;
use crate::guc;
use crate::lockmgr::{self, Key, Mode, Scope};

/// (session holds, transaction holds) taken through the named lock functions.
static HOLDS: BackendLocal<(usize, usize)> = BackendLocal::new((0, 0));

pub fn note_acquired(scope: Scope) {
    HOLDS.with(|(s, x)| match scope {
        Scope::Session => *s += 1,
        Scope::Xact => *x += 1,
    });
}

pub fn note_released(n: usize) {
    HOLDS.with(|(s, _)| *s = s.saturating_sub(n));
}

/// Transaction holds end with the transaction (registered in _PG_init).
#[pg_guard]
pub unsafe extern "C-unwind" fn on_xact_end(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    if matches!(
        event,
        pg_sys::XactEvent::XACT_EVENT_COMMIT
            | pg_sys::XactEvent::XACT_EVENT_ABORT
            | pg_sys::XactEvent::XACT_EVENT_PREPARE
    ) {
        HOLDS.with(|(_, x)| *x = 0);
    }
}

/// Ok when taking `key` keeps this session within the cap.
pub fn check_cap(key: Key, mode: Mode) -> Result<(), ErrorReport> {
    let cap = guc::MAX_LOCKS_PER_SESSION.get();
    let (s, x) = HOLDS.get();
    if cap <= 0 || s + x < cap as usize {
        return Ok(());
    }
    let held = lockmgr::advisory_locks_held();
    HOLDS.set((held, 0));
    if held < cap as usize || lockmgr::held_by_me(key, mode) || lockmgr::held_by_me(key, other(mode)) {
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
