//! The per-session cap: `pg_named_locks.max_locks_per_session` distinct named locks.
//!
//! Checked before a named lock call requests a lock, so one runaway session fails with
//! 53400 instead of exhausting the shared lock table (53200) for everybody. The named
//! lock functions keep a backend-local count of the holds they take and give back, per
//! key, mode and level (transaction holds are dropped when the transaction ends), in a
//! table of the keys held, so the number of distinct keys is its size, known without
//! touching shared memory. Holds that vanish behind our back (pg_advisory_unlock_all(),
//! a rolled-back subtransaction) can only make that number too high; before refusing, the entries are checked against the
//! backend's own lock table and stale ones dropped, so a refusal is always exact.

use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::backend::BackendLocal;
use crate::guc;
use crate::lockmgr::{self, Key, Mode, Scope};
use crate::flatmap::FlatMap;

/// Holds per key held: [session exclusive, session shared, xact exclusive, xact shared].
/// A key leaves when its last hold is given back, so `len()` is the number of distinct
/// keys held (as far as the named functions know; see `check_cap`).
type Holds = FlatMap<Key, [u32; 4]>;

static HOLDS: BackendLocal<Holds> = BackendLocal::new(FlatMap::new());

/// Multiplicative hashing: the table probes from the high bits. The two key spaces use
/// different multipliers so that a pair and a bigint with the same 64 bits rarely share
/// a hash (equal hashes are told apart by comparing keys anyway).
#[inline]
fn hash(key: Key) -> u64 {
    match key {
        Key::Int64(k) => (k as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        Key::Pair(a, b) => (((a as u32 as u64) << 32) | b as u32 as u64).wrapping_mul(0xc2b2_ae3d_27d4_eb4f),
    }
}

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
    HOLDS.with(|h| h.get_or_insert(hash(key), |&k| k == key, || (key, [0; 4]))[idx(mode, scope)] += 1);
}

/// One hold given back (unlock, or the undo of a failed all-or-nothing call).
pub fn note_released(key: Key, mode: Mode, scope: Scope) {
    HOLDS.with(|h| {
        h.update_or_remove(hash(key), |&k| k == key, |c| {
            let i = idx(mode, scope);
            c[i] = c[i].saturating_sub(1);
            c.iter().any(|&n| n > 0)
        })
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
            h.retain(|_, c| {
                c[2] = 0;
                c[3] = 0;
                c[0] + c[1] > 0
            });
        });
    }
}

/// Ok when taking `key` keeps this session within the cap.
#[inline(always)]
pub fn check_cap(key: Key) -> Result<(), ErrorReport> {
    let cap = guc::max_locks_per_session();
    if cap <= 0 || HOLDS.with(|h| h.len()) < cap as usize {
        return Ok(());
    }
    check_cap_at(key, cap as usize)
}

/// `check_cap` for a session at its cap (as far as the table knows).
#[cold]
fn check_cap_at(key: Key, cap: usize) -> Result<(), ErrorReport> {
    if HOLDS.with(|h| h.get(hash(key), |&k| k == key).is_some()) {
        return Ok(());
    }
    // Drop the entries the lock table no longer backs, then decide on the exact number.
    // (The lock-table lookups run outside the table's closure: nothing can unwind out of
    // it half-changed.)
    let keys: Vec<Key> = HOLDS.with(|h| h.keys().copied().collect());
    let stale: Vec<Key> =
        keys.into_iter().filter(|&k| !(lockmgr::held_by_me(k, Mode::Exclusive) || lockmgr::held_by_me(k, Mode::Shared))).collect();
    HOLDS.with(|h| {
        for k in stale {
            h.remove(hash(k), |&x| x == k);
        }
    });
    if HOLDS.with(|h| h.len()) < cap {
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
