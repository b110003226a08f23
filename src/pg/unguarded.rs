//! PostgreSQL functions called without pgrx's FFI guard.
//!
//! pgrx wraps every `pg_sys` function in a guard (a sigsetjmp, a thread check and an
//! exception-stack swap) that turns an ERROR's longjmp into a Rust panic, so Rust frames
//! unwind and drop what they own. That costs about a tenth of a lock+unlock pair, so
//! the calls of the lock hot path are declared here once more, without it. An ERROR
//! raised inside one of these longjmps straight to PostgreSQL's handler, past every Rust
//! frame in between: allowed only where it cannot happen, or where the frames it skips
//! own nothing (no heap memory, no Drop state, no half-done bookkeeping) and no
//! subtransaction of ours is open.
//!
//! # Unguarded calls
//! | function | called from | why it is safe there |
//! |---|---|---|
//! | `LockAcquireExtended` (dontWait, reportMemoryError = false) | `pg::lockmgr::try_acquire_fast`, only on the one-key path of `lock::wait::acquire_one` | does not wait, run the deadlock detector or raise for a full lock table (that is NOT_AVAIL, re-checked through the guarded call). What remains is a backend-local out-of-memory growing the local lock hash or a LOCALLOCK's owner array: the frames it would skip (`api::named` → `lock::acquire_one` → `lock::wait::try_one`) own nothing, and no subtransaction of ours is open. Every multi-key path and every request inside our subtransaction uses the guarded `pg_sys::LockAcquireExtended`. |
//! | `LockRelease` | `pg::lockmgr::release_held` (a hold this call took, being undone) and `pg::lockmgr::release_fast` (`unlock_named`, one name) | raises only for an invalid lock method or mode (ours are constants) or a corrupt lock table. A lock not held gets a WARNING, whose errfinish runs `CHECK_FOR_INTERRUPTS` and can raise a pending cancel: `release_held` releases only holds it knows it has (no WARNING), and `unlock_named`'s frames own nothing. `unlock_many` and the pair unlocks use the guarded `pg_sys::LockRelease`. |
//! | `LWLockAcquire`, `LWLockRelease`, `LWLockHeldByMe` | `registry::Guard` | LWLockAcquire fails only past 200 LWLocks held at once (we hold at most the registry lock and one lock-manager partition lock) and waits with interrupts held off; LWLockRelease fails only for a lock not held, and `Guard` releases only what it acquired. |
//! | `LWLockAcquire`, `LWLockRelease` | `registry::Guard` on the fence's locks | as for the registry: at most the fence lock and one partition lock are held at once, and `Guard` releases only what it acquired. |
//! | `LockHeldByMe` | `pg::lockmgr::held_by_me` | a `hash_search(HASH_FIND)` of the backend-local lock hash: finding allocates nothing and raises nothing. |
//! | `RecoveryInProgress`, `GetWALInsertionTimeLine` | `pg::backend::in_recovery`, `pg::backend::insert_timeline` | read shared recovery state (a spinlock-protected flag) and `XLogCtl->InsertTimeLineID`; no error path (the latter only asserts that recovery ended, which the caller checked). |
//! | `GetUserId` | `pg::backend::current_user_id` | returns a backend-global. |
//! | `GetCurrentTimestamp` | `pg::backend::precise_now` | gettimeofday() converted; no error path. |
//! | `get_timeout_start_time` | `lock::wait::wait_started` | reads one field of timeout.c's static array. |
//! | `GetCurrentTimestamp` | `pg::timer::on_timer`, in signal context | as above; timeout.c's own SIGALRM handler calls it too. |
//! | `pstrdup` | `pg::timer::on_emit_log`, inside `EmitErrorReport` | allocates in ErrorContext, which keeps reserved space for error reports; a failure there is PostgreSQL's error recursion, handled by elog.c (the hook's frames own only strings, and the session is ending). |
//!
//! Functions declared here to be called inside one `pg_guard_ffi_boundary` around a
//! whole loop (one guard instead of one per call; the loop's frames own nothing):
//! `cstring_to_text_with_len`, `cstring_to_text`, `GetLockmodeName`,
//! `tuplestore_putvalues` (`monitor::advisory_lock_status`).
//!
//! Each declaration is checked at compile time against pgrx's own binding of the same
//! function (where pgrx has one), so a signature that changes in a new PostgreSQL fails
//! the build instead of corrupting the stack.

use pgrx::pg_sys::{
    Datum, LWLock, LWLockMode, LockAcquireResult, Oid, TimeLineID, TimestampTz, TupleDesc, Tuplestorestate, LOCALLOCK,
    LOCKMETHODID, LOCKMODE, LOCKTAG,
};
use std::ffi::{c_char, c_int};

/// Declares each function without pgrx's guard and asserts that its signature is the
/// one pgrx's bindgen-generated (guarded) wrapper has.
macro_rules! unguarded {
    ($( $(#[$m:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?; )*) => {
        extern "C-unwind" {
            $( $(#[$m])* pub fn $name($($arg: $ty),*) $(-> $ret)?; )*
        }
        $(
            $(#[$m])*
            const _: unsafe fn($($ty),*) $(-> $ret)? = pgrx::pg_sys::$name;
        )*
    };
}

unguarded! {
    #[cfg(any(feature = "pg15", feature = "pg16", feature = "pg17"))]
    fn LockAcquireExtended(
        locktag: *const LOCKTAG,
        lockmode: LOCKMODE,
        sessionLock: bool,
        dontWait: bool,
        reportMemoryError: bool,
        locallockp: *mut *mut LOCALLOCK,
    ) -> LockAcquireResult::Type;
    #[cfg(not(any(feature = "pg15", feature = "pg16", feature = "pg17")))]
    fn LockAcquireExtended(
        locktag: *const LOCKTAG,
        lockmode: LOCKMODE,
        sessionLock: bool,
        dontWait: bool,
        reportMemoryError: bool,
        locallockp: *mut *mut LOCALLOCK,
        logLockFailure: bool,
    ) -> LockAcquireResult::Type;
    fn LockRelease(locktag: *const LOCKTAG, lockmode: LOCKMODE, sessionLock: bool) -> bool;
    fn LWLockAcquire(lock: *mut LWLock, mode: LWLockMode::Type) -> bool;
    fn LWLockRelease(lock: *mut LWLock);
    fn LWLockHeldByMe(lock: *mut LWLock) -> bool;
    #[cfg(any(feature = "pg15", feature = "pg16"))]
    fn LockHeldByMe(locktag: *const LOCKTAG, lockmode: LOCKMODE) -> bool;
    #[cfg(not(any(feature = "pg15", feature = "pg16")))]
    fn LockHeldByMe(locktag: *const LOCKTAG, lockmode: LOCKMODE, orstronger: bool) -> bool;
    fn RecoveryInProgress() -> bool;
    fn GetWALInsertionTimeLine() -> TimeLineID;
    fn GetUserId() -> Oid;
    fn GetCurrentTimestamp() -> TimestampTz;
    fn cstring_to_text_with_len(s: *const c_char, len: c_int) -> *mut pgrx::pg_sys::text;
    fn cstring_to_text(s: *const c_char) -> *mut pgrx::pg_sys::text;
    fn GetLockmodeName(lockmethodid: LOCKMETHODID, mode: LOCKMODE) -> *const c_char;
    fn pstrdup(in_: *const c_char) -> *mut c_char;
    #[cfg(any(feature = "pg15", feature = "pg16"))]
    fn tuplestore_putvalues(state: *mut Tuplestorestate, tdesc: TupleDesc, values: *mut Datum, isnull: *mut bool);
    // const since PostgreSQL 17
    #[cfg(not(any(feature = "pg15", feature = "pg16")))]
    fn tuplestore_putvalues(state: *mut Tuplestorestate, tdesc: TupleDesc, values: *const Datum, isnull: *const bool);
}

extern "C-unwind" {
    /// timeout.c (pgrx has no binding to check against): `TimestampTz
    /// get_timeout_start_time(TimeoutId id)`, TimeoutId a C enum (an int).
    pub fn get_timeout_start_time(id: c_int) -> TimestampTz;
    /// timeout.c: `TimeoutId RegisterTimeout(TimeoutId id, timeout_handler_proc
    /// handler)`; raises only FATAL (no free user slot), which exits without a longjmp.
    pub fn RegisterTimeout(id: c_int, handler: Option<unsafe extern "C-unwind" fn()>) -> c_int;
    /// timeout.c: `void enable_timeout_every(TimeoutId id, TimestampTz fin_time, int
    /// delay_ms)`; raises only FATAL (setitimer failed).
    pub fn enable_timeout_every(id: c_int, fin_time: TimestampTz, delay_ms: c_int);
    /// timeout.c: `void disable_timeout(TimeoutId id, bool keep_indicator)`; as above.
    pub fn disable_timeout(id: c_int, keep_indicator: bool);
}

extern "C" {
    /// twophase.c: the max_prepared_transactions setting (fixed at server start); pgrx
    /// does not bind it. A plain variable, read where the lock lists are walked.
    pub static max_prepared_xacts: c_int;
}
