//! Leased locks (DESIGN.md §8): a session lock that the server ends, by ending the
//! holder's session, when the lease runs out without renewal while the session is idle.
//!
//! The leases of a backend live here, backend-local; `pg::timer` fires at the earliest
//! lease end and ends the session when it is idle then (or as soon as it is idle again).
//! The registry records each lease's end for `advisory_locks_v.lease_expires_at`.
//!
//! A lease ends with the hold it covers: on the unlock that releases the session's last
//! hold of the name (`note_released`, from `unlock_named`), and at transaction end for
//! holds that went away behind our back (`pg_advisory_unlock`, `pg_advisory_unlock_all`,
//! `DISCARD ALL`; `after_locks`). A session that never takes a lease pays one flag test
//! on unlock and registers no callback.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::lock::{self, Target};
use crate::pg::backend::{coarse_now, precise_now, BackendLocal};
use crate::pg::encoding::for_message;
use crate::pg::lockmgr::{self, Key, Mode, Scope};
use crate::pg::timer;
use crate::registry::shmem;

/// The shortest lease: the timer's resolution and the time a client needs to renew.
pub const MIN_LEASE_US: i64 = 1_000_000;
/// Bytes of a lock name kept for the message that ends a session (cut at a character).
const NAME_FOR_MESSAGE: usize = 200;

struct Lease {
    key: i64,
    lease_us: i64,
    /// when it was taken or last renewed
    renewed: i64,
    expires: i64,
    /// the registry slot whose entry shows the lease end
    slot: Option<i32>,
    name: String,
}

static LEASES: BackendLocal<Vec<Lease>> = BackendLocal::new(Vec::new());
/// Whether `LEASES` is non-empty: the one test unlock and transaction end make.
static ACTIVE: BackendLocal<bool> = BackendLocal::new(false);

/// A lease argument: NULL → 22004, shorter than a second → 22023, one whose end does not
/// fit a timestamp → 22008. In microseconds (a month counts 30 days, a day 24 hours).
pub fn duration(lease: Option<Interval>) -> i64 {
    let us = crate::name::validate::require_non_null(lease, "lease").as_micros();
    if us < MIN_LEASE_US as i128 {
        ErrorReport::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "lease must be at least 1 second", "pg_named_locks")
            .set_hint("Pass an interval such as '30 seconds', and renew the lease well before it runs out.")
            .report(PgLogLevel::ERROR);
    }
    // END_TIMESTAMP (datatype/timestamp.h): the first timestamp PostgreSQL cannot show
    const END_TIMESTAMP: i64 = 9_223_371_331_200_000_000;
    match i64::try_from(us).ok().filter(|&us| precise_now().checked_add(us).is_some_and(|end| end < END_TIMESTAMP)) {
        Some(us) => us,
        None => {
            ErrorReport::new(PgSqlErrorCode::ERRCODE_DATETIME_FIELD_OVERFLOW, "lease is too long", "pg_named_locks")
                .set_hint("A lease must end at a representable timestamp; leave out the lease for a lock without one.")
                .report(PgLogLevel::ERROR);
            unreachable!("ERROR does not return")
        }
    }
}

/// Leases are enforced by looking at the session's own activity state, which PostgreSQL
/// keeps only with track_activities on (the default; only a superuser can turn it off).
fn require_activity_tracking() {
    // SAFETY: a plain read of a GUC variable.
    if !unsafe { pgrx::pg_sys::pgstat_track_activities } {
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "leased locks need track_activities to be on",
            "pg_named_locks",
        )
        .set_detail("The server tells an idle session from a busy one by its activity state.")
        .set_hint("SET track_activities = on (a superuser setting, on by default).")
        .report(PgLogLevel::ERROR);
    }
}

/// `lock_named_lease`: take `t`'s lock (exclusive, session) and lease it for `lease_us`;
/// false when `wait` ran out. Taking a lease on a lock the session already holds (leased
/// or not) leases that hold: the lease starts again with the new length.
pub fn acquire(t: &Target, lease_us: i64, wait: lock::wait::Wait) -> bool {
    require_activity_tracking();
    // before the lock: registering can fail (FATAL when the timeout slots are taken)
    timer::register(describe);
    register_callbacks();
    LEASES.with(|l| {
        if l.try_reserve(1).is_err() {
            crate::error::out_of_memory(size_of::<Lease>());
        }
    });
    let Key::Int64(key) = t.key else { unreachable!("leases are on one-name locks") };
    let name = t.label_name().map(cut).unwrap_or_default();
    if !lock::acquire(std::slice::from_ref(t), Mode::Exclusive, Scope::Session, wait) {
        return false;
    }
    // Nothing below raises: the vector has room, the registry write is a store.
    let now = precise_now();
    let expires = now + lease_us;
    let slot = t.remember(shmem::get(), coarse_now()).map(|(s, _)| s);
    let old = LEASES.with(|l| match l.iter_mut().find(|x| x.key == key) {
        Some(x) => {
            let old = (x.slot, x.expires);
            *x = Lease { key, lease_us, renewed: now, expires, slot, name };
            Some(old)
        }
        None => {
            l.push(Lease { key, lease_us, renewed: now, expires, slot, name });
            None
        }
    });
    let me = my_pid();
    if let (Some(reg), Some((Some(s), e))) = (shmem::attached(), old.filter(|&(s, _)| s != slot)) {
        reg.clear_lease(s, me, e);
    }
    if let (Some(reg), Some(s)) = (shmem::attached(), slot) {
        reg.note_lease(s, me, expires);
    }
    ACTIVE.set(true);
    rearm();
    true
}

/// `named_lock_renew`: start the lease of `key` again; false when this session holds no
/// leased lock of that name.
pub fn renew(key: i64) -> bool {
    if !ACTIVE.get() {
        return false;
    }
    if !lockmgr::held_by_me(Key::Int64(key), Mode::Exclusive) {
        // released behind our back since the last transaction end
        forget(|l| l.key == key);
        return false;
    }
    let now = precise_now();
    let renewed = LEASES.with(|l| {
        let x = l.iter_mut().find(|x| x.key == key)?;
        x.renewed = now;
        x.expires = now + x.lease_us;
        Some((x.slot, x.expires))
    });
    let Some((slot, new)) = renewed else { return false };
    if let (Some(reg), Some(s)) = (shmem::attached(), slot) {
        reg.note_lease(s, my_pid(), new);
    }
    rearm();
    true
}

/// After a session unlock of `key` (exclusive): the lease ends when the last hold did.
#[inline(always)]
pub fn note_released(key: Key) {
    if ACTIVE.get() {
        released(key);
    }
}

#[cold]
#[inline(never)]
fn released(key: Key) {
    if let Key::Int64(k) = key {
        if !lockmgr::held_by_me(key, Mode::Exclusive) {
            forget(|l| l.key == k);
        }
    }
}

static CALLBACKS: BackendLocal<bool> = BackendLocal::new(false);

/// The callbacks, registered with the first lease of a backend: the end of each
/// transaction (after its locks are released) and the end of the backend.
fn register_callbacks() {
    if !CALLBACKS.get() {
        // SAFETY: register plain functions for this backend's resource releases and exit.
        unsafe {
            pgrx::pg_sys::RegisterResourceReleaseCallback(Some(after_locks), std::ptr::null_mut());
            pgrx::pg_sys::before_shmem_exit(Some(at_exit), pgrx::pg_sys::Datum::from(0));
        }
        CALLBACKS.set(true);
    }
}

/// At the end of each top-level transaction, once its locks are released (so that a
/// transaction hold of the same name no longer counts): drop the leases whose lock is
/// gone (see the module doc).
#[pg_guard]
unsafe extern "C-unwind" fn after_locks(
    phase: pgrx::pg_sys::ResourceReleasePhase::Type,
    _is_commit: bool,
    is_top_level: bool,
    _arg: *mut std::ffi::c_void,
) {
    if ACTIVE.get() && is_top_level && phase == pgrx::pg_sys::ResourceReleasePhase::RESOURCE_RELEASE_AFTER_LOCKS {
        forget(|l| !lockmgr::held_by_me(Key::Int64(l.key), Mode::Exclusive));
    }
}

/// The backend ends (its locks with it): clear its leases from the registry, so that
/// the next holder of a name does not show a lease it never took.
#[pg_guard]
unsafe extern "C-unwind" fn at_exit(_code: i32, _arg: pgrx::pg_sys::Datum) {
    if ACTIVE.get() {
        forget(|_| true);
    }
}

fn my_pid() -> i32 {
    // SAFETY: a plain read of a backend-global.
    unsafe { pgrx::pg_sys::MyProcPid }
}

/// Drop the leases `gone` selects, clear their registry records, re-arm the timer.
fn forget(gone: impl Fn(&Lease) -> bool) {
    // not `shmem::get`: this runs in transaction and exit callbacks, where attaching
    // (inside a subtransaction) is not allowed; a lease's slot came from an attached
    // registry anyway
    let reg = shmem::attached();
    let me = my_pid();
    LEASES.with(|l| {
        l.retain(|x| {
            if !gone(x) {
                return true;
            }
            if let (Some(reg), Some(s)) = (reg, x.slot) {
                reg.clear_lease(s, me, x.expires);
            }
            false
        })
    });
    rearm();
}

fn rearm() {
    match LEASES.with(|l| l.iter().map(|x| x.expires).min()) {
        Some(due) => timer::arm(due),
        None => {
            ACTIVE.set(false);
            timer::disarm();
        }
    }
}

/// The lease that ran out first, for the message that ends the session (`pg::timer`).
fn describe() -> Option<(String, i64, i64)> {
    LEASES.with(|l| l.iter().min_by_key(|x| x.expires).map(|x| (x.name.clone(), x.lease_us, x.renewed)))
}

/// A name as quoted in a message: in a form every database encoding can show, cut to
/// `NAME_FOR_MESSAGE` bytes at a character boundary.
/// (Cut before it is escaped: a name can be a gigabyte long, its message form is not.)
fn cut(name: &str) -> String {
    let head = crate::name::prefix(name, NAME_FOR_MESSAGE);
    let mut s = for_message(head).into_owned();
    if head.len() < name.len() {
        s.push('…');
    }
    s
}
