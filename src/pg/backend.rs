//! State private to one backend process, and its clock.
//!
//! PostgreSQL runs each session in a single-threaded process, so backend-local state can
//! live in plain statics. (`thread_local!` would cost a `__tls_get_addr` call on every
//! access from a shared library, on the lock hot path.)

use std::cell::UnsafeCell;

pub struct BackendLocal<T>(UnsafeCell<T>);

// SAFETY: a backend runs PostgreSQL code on one thread only; nothing here is shared
// with another thread. (Rust unit tests that touch one of these run on one thread.)
unsafe impl<T> Sync for BackendLocal<T> {}

impl<T> BackendLocal<T> {
    pub const fn new(v: T) -> Self {
        BackendLocal(UnsafeCell::new(v))
    }

    /// Exclusive access for the duration of `f`. `f` must not call back into code that
    /// uses the same cell (none of ours does: the closures only touch plain data).
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        // SAFETY: single-threaded, and not re-entered (see above).
        unsafe { f(&mut *self.0.get()) }
    }
}

impl<T: Copy> BackendLocal<T> {
    #[inline]
    pub fn get(&self) -> T {
        self.with(|v| *v)
    }
    #[inline]
    pub fn set(&self, v: T) {
        self.with(|x| *x = v)
    }
}

/// The time as a PostgreSQL timestamptz, from the kernel's coarse clock (a few
/// milliseconds of resolution at a fraction of GetCurrentTimestamp's cost): for "held
/// since", "last acquired" and LRU order on the uncontended path.
#[allow(clippy::unnecessary_cast)] // time_t and c_long are i64 here, but i32 on 32-bit targets
pub fn coarse_now() -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec we pass.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) } != 0 {
        return precise_now();
    }
    const PG_EPOCH_UNIX_SECS: i64 = 946_684_800; // 2000-01-01
    (ts.tv_sec as i64 - PG_EPOCH_UNIX_SECS) * 1_000_000 + ts.tv_nsec as i64 / 1000
}

/// PostgreSQL's own clock (`GetCurrentTimestamp`, microseconds): for wait times and
/// deadlines, which the coarse clock is too coarse for.
pub fn precise_now() -> i64 {
    // SAFETY: gettimeofday() converted; no error path.
    unsafe { unguarded::GetCurrentTimestamp() }
}

use crate::pg::unguarded;

/// The current user (as `current_user`), for the name-privacy rule.
#[inline]
pub fn current_user_id() -> u32 {
    // SAFETY: GetUserId only reads a backend-global Oid and never raises an ERROR, so it
    // needs no longjmp guard.
    unsafe { unguarded::GetUserId() }.to_u32()
}

/// Whether the server is still in recovery (a standby): `RecoveryInProgress`.
pub fn in_recovery() -> bool {
    // SAFETY: reads shared recovery state; raises nothing (see `pg::unguarded`).
    unsafe { unguarded::RecoveryInProgress() }
}

/// The timeline WAL is written on (call only outside recovery).
pub fn insert_timeline() -> u32 {
    // SAFETY: valid outside recovery, which the caller checked; raises nothing then.
    unsafe { unguarded::GetWALInsertionTimeLine() }
}

/// The top transaction's id, 0 when it has none.
pub fn top_xid() -> u32 {
    // SAFETY: reads the backend's transaction state.
    unsafe { pgrx::pg_sys::GetTopTransactionIdIfAny() }.into_inner()
}
