//! Fenced grants (DESIGN.md §7): take a named lock exclusively and hand out the grant's
//! fencing token; the token of this session's hold; the check any session can make.

use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use super::cap;
use super::wait::Wait;
use super::Target;
use crate::fence::{self, Fence, MintError};
use crate::name::validate::{require_lockable, require_non_null};
use crate::pg::backend::{in_recovery, insert_timeline, top_xid, BackendLocal};
use crate::pg::lockmgr::{self, my_database, Key, Mode, Scope};

static CALLBACK: BackendLocal<bool> = BackendLocal::new(false);

/// `lock_named_fenced` and its siblings: the token, or None when the lock was not taken
/// (busy, or the timeout passed: nothing is held then).
pub fn acquire(name: Option<&str>, scope: Scope, wait: Wait) -> Option<i64> {
    let target = Target::named(name);
    let fence = fence::shmem::get();
    if in_recovery() {
        on_standby();
    }
    let Key::Int64(key) = target.key else { unreachable!("named locks have bigint keys") };
    let db = my_database();
    // Read before the request: was the lock already ours (a re-entrant call)?
    let held_before = lockmgr::held_by_me(target.key, Mode::Exclusive);
    if !super::acquire_plain(&[target], Mode::Exclusive, scope, wait) {
        return None;
    }
    if held_before {
        if let Some(t) = my_token(fence, db, key) {
            return Some(t);
        }
    }
    match mint(fence, db, key) {
        Ok(t) => Some(t),
        Err(report) => {
            // Nothing may stay held by a call that raises: give back the hold this call
            // took (an earlier hold stays, as it was).
            lockmgr::release_held(Key::Int64(key), Mode::Exclusive, scope);
            cap::note_released(Key::Int64(key), Mode::Exclusive, scope);
            report.report(PgLogLevel::ERROR);
            unreachable!("ERROR does not return")
        }
    }
}

#[allow(clippy::result_large_err)] // raised at once by the caller, after its undo
fn mint(fence: Fence, db: u32, key: i64) -> Result<i64, ErrorReport> {
    let tli = insert_timeline();
    if tli > fence::MAX_TIMELINE {
        return Err(minting_failed(MintError::Timeline(tli)));
    }
    let counter = fence.mint().map_err(minting_failed)?;
    let token = ((tli as i64) << fence::COUNTER_BITS) | counter as i64;
    if !fence.record(db, key, token) {
        return Err(ErrorReport::new(
            PgSqlErrorCode::ERRCODE_OUT_OF_MEMORY,
            "no room to record another fenced lock",
            "pg_named_locks",
        )
        .set_hint(
            "Too many fenced locks are held at once; raise max_locks_per_transaction (the table is sized from it) and restart.",
        ));
    }
    register_callback();
    Ok(token)
}

fn minting_failed(e: MintError) -> ErrorReport {
    match e {
        MintError::Damaged => ErrorReport::new(
            PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            format!("fencing state file \"{}\" is damaged", fence::file::FILE),
            "pg_named_locks",
        )
        .set_detail("It holds the high-water mark of the tokens handed out; without it tokens could repeat.")
        .set_hint("Restore the file from the data directory's backup and restart the server."),
        MintError::Io(err) => ErrorReport::new(
            PgSqlErrorCode::ERRCODE_IO_ERROR,
            format!("could not write fencing state file \"{}\": {err}", fence::file::FILE),
            "pg_named_locks",
        ),
        MintError::Exhausted => ErrorReport::new(
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            "fencing tokens of this timeline are exhausted",
            "pg_named_locks",
        ),
        MintError::Timeline(tli) => ErrorReport::new(
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!("timeline {tli} is too large for fencing tokens (at most {})", fence::MAX_TIMELINE),
            "pg_named_locks",
        ),
    }
}

#[cold]
fn on_standby() -> ! {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
        "cannot hand out fencing tokens during recovery",
        "pg_named_locks",
    )
    .set_detail("Advisory locks on a standby are local to it, and a standby cannot be written to anyway.")
    .set_hint("Take fenced locks on the primary.")
    .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// The token of this session's current exclusive hold of (db, key), if it has one.
fn my_token(fence: Fence, db: u32, key: i64) -> Option<i64> {
    let r = fence.lookup(db, key)?;
    (r.token != 0 && r.session == fence::my_session_id() && fence.holds(&r)).then_some(r.token)
}

/// `named_lock_token(name)`.
pub fn token(name: Option<&str>) -> Option<i64> {
    let Key::Int64(key) = Target::named(name).key else { unreachable!() };
    let fence = fence::shmem::get();
    if !fence::session_fenced() {
        return None;
    }
    let r = fence.lookup(my_database(), key)?;
    // ours: a record of another session is not our hold
    (r.token != 0
        && r.session == fence::my_session_id()
        && fence.holds(&r)
        && lockmgr::held_by_me(Key::Int64(key), Mode::Exclusive))
    .then_some(r.token)
}

/// `named_lock_check(name, token)`.
pub fn check(name: Option<&str>, token: Option<i64>) -> bool {
    let n = require_lockable(name, "name");
    let token = require_non_null(token, "token");
    let Key::Int64(key) = Target::named(Some(n)).key else { unreachable!() };
    let fence = fence::shmem::get();
    match fence.lookup(my_database(), key) {
        Some(r) => r.token == token && fence.holds(&r),
        None => false,
    }
}

/// `named_lock_assert(name, token)`: 55P03 when `check` is false.
pub fn assert(name: Option<&str>, token: Option<i64>) {
    if check(name, token) {
        return;
    }
    let n = name.unwrap_or_default();
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
        format!("fencing token {} does not hold lock \"{}\"", token.unwrap_or_default(), crate::pg::encoding::for_message(n)),
        "pg_named_locks",
    )
    .set_detail("The lock was released or taken again since the token was handed out.")
    .set_hint("The writer lost its lock: stop, take the lock again and use its new token.")
    .report(PgLogLevel::ERROR);
}

/// A plain exclusive grant to a session that has taken tokens: for each key it did not
/// hold before, an old token of this session no longer stands for the hold.
pub fn forget_regranted(keys: &[Key], held_before: &[bool]) {
    let Some(fence) = fence::shmem::attached() else { return };
    let db = my_database();
    for (k, &before) in keys.iter().zip(held_before) {
        if let (Key::Int64(key), false) = (k, before) {
            fence.forget_mine(db, *key);
        }
    }
}

fn register_callback() {
    if !CALLBACK.get() {
        CALLBACK.set(true);
        // SAFETY: registers a plain function for this backend's transaction events.
        unsafe { pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut()) };
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact_event(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    if event == pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE {
        if let Some(fence) = fence::shmem::attached() {
            let xid = top_xid();
            if xid != 0 {
                fence.note_preparing(xid);
            }
        }
    }
}
