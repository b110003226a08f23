//! Lock primitives on PostgreSQL's lock manager.
//!
//! A named lock must be indistinguishable from `pg_advisory_lock(key)`: same lock tag,
//! same lock method, same modes, same session/transaction ownership. So this module does
//! what `src/backend/utils/adt/lockfuncs.c` does — build an advisory LOCKTAG and call
//! `LockAcquire` / `LockRelease` — and nothing else. Waiting, `lock_timeout`,
//! `statement_timeout`, cancel and the deadlock detector are then the lock manager's own.
//!
//! There is no parallel-mode check: the functions are PARALLEL RESTRICTED, so they only
//! run in the leader, and the built-ins dropped that check in PostgreSQL 13.

use pgrx::pg_sys;

/// Which advisory key space a lock lives in. The numbering of `locktag_field4` (1 for
/// the bigint space, 2 for the two-int4 space) is the built-ins' and keeps the spaces apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    Int64(i64),
    Pair(i32, i32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Exclusive,
    Shared,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Held until unlocked or the session ends; survives COMMIT and ROLLBACK.
    Session,
    /// Released by the lock manager at the end of the transaction.
    Xact,
}

impl Mode {
    fn lockmode(self) -> pg_sys::LOCKMODE {
        (match self {
            Mode::Exclusive => pg_sys::ExclusiveLock,
            Mode::Shared => pg_sys::ShareLock,
        }) as pg_sys::LOCKMODE
    }
}

impl Key {
    /// SET_LOCKTAG_INT64 / SET_LOCKTAG_INT32 from lockfuncs.c.
    fn locktag(self) -> pg_sys::LOCKTAG {
        // SAFETY: MyDatabaseId is a plain backend-global Oid, set once at connection start
        // and only read here, in the backend's single thread.
        let db = unsafe { pg_sys::MyDatabaseId }.to_u32();
        let (f2, f3, f4) = match self {
            Key::Int64(k) => (((k as u64) >> 32) as u32, k as u64 as u32, 1u16),
            Key::Pair(k1, k2) => (k1 as u32, k2 as u32, 2u16),
        };
        pg_sys::LOCKTAG {
            locktag_field1: db,
            locktag_field2: f2,
            locktag_field3: f3,
            locktag_field4: f4,
            locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
            locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// Only possible without waiting: somebody else holds a conflicting lock.
    NotAvailable,
    /// Newly granted to this backend.
    Granted,
    /// This backend already held it; the hold count went up.
    AlreadyHeld,
}

/// Take a lock. With `wait` it blocks like `pg_advisory_lock` (and can raise on
/// lock_timeout, statement_timeout, cancel or deadlock); without, it returns
/// `NotAvailable` at once when the lock is taken.
pub fn acquire(key: Key, mode: Mode, scope: Scope, wait: bool) -> Acquired {
    let tag = key.locktag();
    // SAFETY: `tag` is a fully initialised LOCKTAG on our stack, valid for the call;
    // LockAcquire copies it. Errors unwind through PostgreSQL's longjmp, which pgrx's
    // guard converts; we hold no Rust resources that need dropping across it.
    let res = unsafe { pg_sys::LockAcquire(&tag, mode.lockmode(), scope == Scope::Session, !wait) };
    match res {
        pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL => Acquired::NotAvailable,
        pg_sys::LockAcquireResult::LOCKACQUIRE_ALREADY_HELD
        | pg_sys::LockAcquireResult::LOCKACQUIRE_ALREADY_CLEAR => Acquired::AlreadyHeld,
        _ => Acquired::Granted,
    }
}

/// Release one hold of a session lock. Returns false (and the lock manager emits its
/// WARNING "you don't own a lock of type …") when this session does not hold it.
pub fn release(key: Key, mode: Mode) -> bool {
    release_quiet(key, mode, Scope::Session)
}

/// Release one hold taken by this backend at `scope` (the undo of a successful
/// `acquire`). Unlike `release` it also handles transaction-level holds, which are owned
/// by the current resource owner.
pub fn release_quiet(key: Key, mode: Mode, scope: Scope) -> bool {
    let tag = key.locktag();
    // SAFETY: as in `acquire`; called only for holds this call just took.
    unsafe { pg_sys::LockRelease(&tag, mode.lockmode(), scope == Scope::Session) }
}

/// Whether this backend holds the lock in exactly this mode (at any level). Reads only
/// the backend-local lock table.
pub fn held_by_me(key: Key, mode: Mode) -> bool {
    let tag = key.locktag();
    // SAFETY: LockHeldByMe only reads the backend-local lock hash.
    unsafe {
        #[cfg(any(feature = "pg15", feature = "pg16"))]
        {
            pg_sys::LockHeldByMe(&tag, mode.lockmode())
        }
        #[cfg(not(any(feature = "pg15", feature = "pg16")))]
        {
            pg_sys::LockHeldByMe(&tag, mode.lockmode(), false)
        }
    }
}
