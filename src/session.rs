//! The per-session cap: `pg_named_locks.max_locks_per_session` distinct named locks.
//!
//! Checked before a named lock call requests a lock, so one runaway session fails with
//! 53400 instead of exhausting the shared lock table (53200) for everybody. The named
//! lock functions keep a backend-local count of the holds they take and give back, per
//! key, mode and level (transaction holds are dropped when the transaction ends), so the
//! number of distinct keys is known without touching shared memory. Holds that vanish
//! behind our back (pg_advisory_unlock_all(), a rolled-back subtransaction) can only
//! make that number too high; before refusing, the entries are checked against the
//! backend's own lock table and stale ones dropped, so a refusal is always exact.

use std::collections::HashMap;

use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::backend::BackendLocal;
use crate::guc;
use crate::lockmgr::{self, Key, Mode, Scope};
use crate::namecache::FxBuild;

/// Holds per key: [session exclusive, session shared, xact exclusive, xact shared].
/// Entries that drop to zero stay (a lock taken again soon costs an update, not a
/// remove and an insert); `DISTINCT` counts the non-zero ones, and the zero ones are
/// swept out when they outnumber them.
type Holds = HashMap<Key, [u32; 4], FxBuild>;

static HOLDS: BackendLocal<Option<Holds>> = BackendLocal::new(None);
/// Keys in HOLDS with any hold.
static DISTINCT: BackendLocal<usize> = BackendLocal::new(0);
const SWEEP_AT: usize = 4096;
/// Whether any transaction hold is recorded (so commits of sessions without any skip
/// the scan).
static XACT_HOLDS: BackendLocal<bool> = BackendLocal::new(false);

fn idx(mode: Mode, scope: Scope) -> usize {
    match (scope, mode) {
        (Scope::Session, Mode::Exclusive) => 0,
        (Scope::Session, Mode::Shared) => 1,
        (Scope::Xact, Mode::Exclusive) => 2,
        (Scope::Xact, Mode::Shared) => 3,
    }
}

pub fn note_acquired(key: Key, mode: Mode, scope: Scope) {
    if scope == Scope::Xact {
        XACT_HOLDS.set(true);
    }
    HOLDS.with(|h| {
        let h = h.get_or_insert_with(Holds::default);
        let c = h.entry(key).or_default();
        if c.iter().all(|&n| n == 0) {
            DISTINCT.with(|d| *d += 1);
        }
        c[idx(mode, scope)] += 1;
        if h.len() >= SWEEP_AT && h.len() > 2 * DISTINCT.get() {
            h.retain(|_, c| c.iter().any(|&n| n > 0));
        }
    });
}

/// One hold given back (unlock, or the undo of a failed all-or-nothing call).
pub fn note_released(key: Key, mode: Mode, scope: Scope) {
    HOLDS.with(|h| {
        let Some(h) = h.as_mut() else { return };
        if let Some(c) = h.get_mut(&key) {
            let i = idx(mode, scope);
            if c[i] > 0 {
                c[i] -= 1;
                if c.iter().all(|&n| n == 0) {
                    DISTINCT.with(|d| *d -= 1);
                }
            }
        }
    });
}

/// Transaction holds end with the transaction (registered in _PG_init).
#[pg_guard]
pub unsafe extern "C-unwind" fn on_xact_end(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    if matches!(
        event,
        pg_sys::XactEvent::XACT_EVENT_COMMIT | pg_sys::XactEvent::XACT_EVENT_ABORT | pg_sys::XactEvent::XACT_EVENT_PREPARE
    ) && XACT_HOLDS.get()
    {
        XACT_HOLDS.set(false);
        HOLDS.with(|h| {
            if let Some(h) = h.as_mut() {
                h.retain(|_, c| {
                    c[2] = 0;
                    c[3] = 0;
                    c[0] + c[1] > 0
                });
                DISTINCT.set(h.len());
            }
        });
    }
}

/// Ok when taking `key` keeps this session within the cap.
pub fn check_cap(key: Key) -> Result<(), ErrorReport> {
    let cap = guc::MAX_LOCKS_PER_SESSION.get();
    if cap <= 0 {
        return Ok(());
    }
    let cap = cap as usize;
    if DISTINCT.get() < cap {
        return Ok(());
    }
    let held = |h: &Option<Holds>| h.as_ref().and_then(|h| h.get(&key)).is_some_and(|c| c.iter().any(|&n| n > 0));
    if HOLDS.with(|h| held(h)) {
        return Ok(());
    }
    // Keep only entries with holds that the lock table still backs, then decide on the
    // exact number. (held_by_me reads the backend's lock table, never HOLDS.)
    HOLDS.with(|h| {
        let h = h.get_or_insert_with(Holds::default);
        h.retain(|&k, c| {
            c.iter().any(|&n| n > 0) && (lockmgr::held_by_me(k, Mode::Exclusive) || lockmgr::held_by_me(k, Mode::Shared))
        });
        DISTINCT.set(h.len());
    });
    if DISTINCT.get() < cap {
        return Ok(());
    }
    Err(ErrorReport::new(
        PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
        format!("this session already holds {cap} named locks, the most pg_named_locks.max_locks_per_session allows"),
        "pg_named_locks",
    )
    .set_detail("The lock was not requested, so the shared lock table was not touched.")
    .set_hint("Release locks you no longer need (unlock_named, or end the transaction for xact_ locks), or ask a superuser to raise pg_named_locks.max_locks_per_session (0 = no cap)."))
}
