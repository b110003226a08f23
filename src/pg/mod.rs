//! Every touch of PostgreSQL internals that pgrx does not wrap: the lock manager
//! ([`lockmgr`]), the functions called without pgrx's FFI guard ([`unguarded`]), the
//! constants of PostgreSQL headers that pgrx does not export, `text` arguments read in
//! place ([`text`]), text crossing database encodings ([`encoding`]), and backend-local
//! state and clocks ([`backend`]), the lease timer ([`timer`]).

pub mod backend;
pub mod encoding;
pub mod lockmgr;
pub mod text;
pub mod timer;
pub mod unguarded;

/// `lwlocknames.h`: AddinShmemInitLock is entry 21 of MainLWLockArray in PostgreSQL 15
/// to 18 (pgrx binds the array, not the names).
pub const ADDIN_SHMEM_INIT_LOCK: usize = 21;

/// `timeout.h`: TimeoutId is a C enum; DEADLOCK_TIMEOUT is 1 in PostgreSQL 15 to 18.
pub const DEADLOCK_TIMEOUT: std::ffi::c_int = 1;

/// `timeout.h`: USER_TIMEOUT, the first user-definable TimeoutId: 12 in PostgreSQL 15
/// and 16, 13 from 17 on (TRANSACTION_TIMEOUT came before it). `RegisterTimeout` takes
/// any id at or above it as "allocate a user slot".
#[cfg(any(feature = "pg15", feature = "pg16"))]
pub const USER_TIMEOUT: std::ffi::c_int = 12;
#[cfg(not(any(feature = "pg15", feature = "pg16")))]
pub const USER_TIMEOUT: std::ffi::c_int = 13;

/// Interrupts held off for the length of `f`: `CHECK_FOR_INTERRUPTS` (which every
/// ereport, even of a WARNING or NOTICE, runs in errfinish) does nothing meanwhile, so a
/// pending cancel or statement_timeout cannot turn a warning into an ERROR in the
/// middle of our bookkeeping. The interrupt is served at the next check after `f`.
/// (An ERROR raised inside `f` resets the count itself: errfinish zeroes
/// InterruptHoldoffCount before it longjmps.)
pub fn holding_interrupts<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: HOLD_INTERRUPTS()/RESUME_INTERRUPTS() of miscadmin.h, on the backend's
    // global counter, in the backend's only thread.
    unsafe { pgrx::pg_sys::InterruptHoldoffCount += 1 };
    let r = f();
    // SAFETY: as above; the count is ours to decrement (an ERROR would have left `f`).
    unsafe { pgrx::pg_sys::InterruptHoldoffCount -= 1 };
    r
}
