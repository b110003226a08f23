//! Taking one or several locks, all or nothing, with an optional deadline, without ever
//! leaving a lock behind that the call did not report as taken.
//!
//! The fast path is one non-waiting `LockAcquire` per key: an uncontended call costs
//! exactly what the built-in costs. When a key is busy:
//!
//! - Without a per-call timeout the call waits as the built-in does, in the caller's
//!   transaction (`wait_forever`). If the wait raises (cancel, statement_timeout, the
//!   caller's lock_timeout, a deadlock), the call first runs the lock manager's own
//!   clean-up, gives back a lock granted in the instant the error fired and every hold
//!   it took, then re-raises: a raised call holds nothing new.
//! - With a per-call timeout it opens an internal subtransaction (as a PL/pgSQL
//!   exception block does) and waits there, with `lock_timeout` set to the time left for
//!   this call only (a GUC nest level, popped on the way out), so that a timeout is a
//!   clean `false`: the lock manager's 55P03 is caught and the subtransaction rolled
//!   back, which cleans the wait queue (LockErrorCleanup). A lock granted just as the
//!   timer fired counts as acquired; any other error is re-raised after the clean-up.
//! - All or nothing: when a later key fails, every hold this call took is undone.

use std::panic::AssertUnwindSafe;

use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;

use super::cap;
use crate::pg::backend::precise_now as now;
use crate::pg::lockmgr::{self, Acquired, Key, Mode, Scope};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// try_*: never wait.
    No,
    /// Wait as long as the caller's lock_timeout/statement_timeout allow.
    Forever,
    /// Wait at most this many microseconds in total (> 0).
    Micros(i64),
}

/// What happened to one key, for the statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Granted at once; false when it was already held (re-entrant).
    Immediate(bool),
    /// Granted after waiting this long.
    Waited(i64),
    /// Busy, and the call did not wait (try).
    Busy,
    /// Busy until the deadline.
    TimedOut,
}

/// When the lock manager last started this backend's deadlock timer: ProcSleep does so
/// each time it puts a backend to sleep on a lock (in a hot standby's backends too; only
/// the startup process, which takes no advisory locks, skips it).
fn wait_started() -> i64 {
    // SAFETY: reads one field of timeout.c's static array; cannot raise.
    unsafe { crate::pg::unguarded::get_timeout_start_time(crate::pg::DEADLOCK_TIMEOUT) }
}

/// One successful acquisition made by this call, to undo on failure.
struct Hold {
    key: Key,
    /// taken inside the subtransaction (its rollback already undid transaction locks)
    in_subxact: bool,
}

/// Give back every hold this call took. Transaction holds taken inside the (already
/// rolled back) subtransaction are gone already; only the bookkeeping remains.
fn undo(holds: &[Hold], mode: Mode, scope: Scope) {
    for h in holds.iter().rev() {
        if scope == Scope::Session || !h.in_subxact {
            lockmgr::release_held(h.key, mode, scope);
        }
        cap::note_released(h.key, mode, scope);
    }
}

/// Acquire every key (already sorted and de-duplicated by the caller), all or nothing.
/// `on(i, event)` reports per-key events. Returns true when all are held.
pub fn acquire_all(keys: &[Key], mode: Mode, scope: Scope, wait: Wait, on: &mut dyn FnMut(usize, Event)) -> bool {
    let mut holds: Vec<Hold> = Vec::new();
    let mut blocked = None;
    for (i, &key) in keys.iter().enumerate() {
        // The cap (53400) or a full shared lock table (53200) raises here: give back
        // what this call took. (One key never comes here: that is `acquire_one`.)
        let event = PgTryBuilder::new(AssertUnwindSafe(|| try_key(key, mode, scope, false)))
            .catch_others(|e| {
                undo(&holds, mode, scope);
                e.rethrow()
            })
            .execute();
        let Some(event) = event else {
            blocked = Some(i);
            break;
        };
        cap::note_acquired(key, mode, scope);
        holds.push(Hold { key, in_subxact: false });
        on(i, event);
    }
    let Some(first) = blocked else { return true };
    busy(keys, first, holds, mode, scope, wait, on)
}

/// One key: `acquire_all` without its per-call bookkeeping (the hot path). Returns whether
/// the lock is held now, and what happened. `likely_busy`: another backend had the lock
/// last; a call that may wait then goes straight to the wait, since on a contended lock
/// the non-waiting attempt first is a second round of lock-table work (under a
/// partition lock every waiter competes for) that fails.
#[inline]
pub fn acquire_one(key: Key, mode: Mode, scope: Scope, wait: Wait, likely_busy: bool) -> (bool, Event) {
    if likely_busy && wait == Wait::Forever {
        return wait_one(key, mode, scope);
    }
    match try_one(key, mode, scope) {
        Some(event) => (true, event),
        None => busy_one(key, mode, scope, wait),
    }
}

/// The non-waiting attempt of `acquire_one` alone: the event when the lock is held now
/// (and noted), None when it is busy (then `when_busy` goes on).
#[inline]
pub fn try_one(key: Key, mode: Mode, scope: Scope) -> Option<Event> {
    let event = try_key(key, mode, scope, true)?;
    cap::note_acquired(key, mode, scope);
    Some(event)
}

/// The rest of `acquire_one` after `try_one` found the key busy.
pub fn when_busy(key: Key, mode: Mode, scope: Scope, wait: Wait) -> (bool, Event) {
    match wait {
        // the wait itself: the first attempt inside it is the waiting one
        Wait::Forever => wait_one(key, mode, scope),
        _ => busy_one(key, mode, scope, wait),
    }
}

/// `acquire_one` of a key that is likely busy, for a call without a timeout. Kept out of
/// line, as is `busy_one`: inlined, their error handling would weigh on every call.
#[inline(never)]
fn wait_one(key: Key, mode: Mode, scope: Scope) -> (bool, Event) {
    if let Err(e) = cap::check_cap(key) {
        e.report(PgLogLevel::ERROR);
    }
    // No non-waiting attempt came first here, so whether the lock was held before the
    // request is read now, not inferred after an error (a waiting request of a lock
    // already held returns at once, but can still raise: out of memory recording the
    // new owner).
    let held_before = lockmgr::held_by_me(key, mode);
    // `wait_forever` for one key, without its list of holds to undo: nothing else is
    // held by this call, and nothing after the grant can raise. A bare catch_unwind, not
    // PgTryBuilder: that allocates its handler (and frees it) on every call, here every
    // contended call. An error of the wait reaches us as the panic pgrx's FFI guard made
    // of it, and goes on unchanged after the clean-up.
    let event = match std::panic::catch_unwind(|| wait_for(key, mode, scope)) {
        Ok(event) => event,
        Err(error) => {
            give_back_edge_grant(key, mode, scope, held_before);
            std::panic::resume_unwind(error)
        }
    };
    cap::note_acquired(key, mode, scope);
    (true, event)
}

/// Request `key` and sleep until it is granted; what happened, for the statistics.
fn wait_for(key: Key, mode: Mode, scope: Scope) -> Event {
    let started = wait_started();
    let got = lockmgr::acquire_waiting(key, mode, scope);
    // The lock manager starts the deadlock timer when, and only when, it puts the
    // backend to sleep: the timer's start time tells a wait (and when it began) from a
    // grant at once, without reading the clock twice.
    match (wait_started(), got) {
        (t, _) if t != started => Event::Waited(now() - t),
        (_, Acquired::AlreadyHeld) => Event::Immediate(false),
        _ => Event::Immediate(true),
    }
}

/// The wait for `key` raised (cancel, a timeout, a deadlock): leave the wait queue now,
/// and give back the lock if it was granted in the instant the error fired.
/// `held_before`: whether this backend held `key` in `mode` before the request, read
/// before it was made.
fn give_back_edge_grant(key: Key, mode: Mode, scope: Scope, held_before: bool) {
    // SAFETY: LockErrorCleanup is the first step of every (sub)transaction abort and is
    // idempotent: it leaves the wait queue, or, when the lock was granted as the error
    // fired, records the grant in the backend's lock table. Run now, it lets us see and
    // undo such a grant before the error propagates. A hold of `key` in this mode that
    // was not there before the request is that grant.
    unsafe { pg_sys::LockErrorCleanup() };
    if !held_before && lockmgr::held_by_me(key, mode) {
        lockmgr::release_held(key, mode, scope);
    }
}

#[inline(never)]
fn busy_one(key: Key, mode: Mode, scope: Scope, wait: Wait) -> (bool, Event) {
    let mut event = Event::Busy;
    let ok = busy(std::slice::from_ref(&key), 0, Vec::new(), mode, scope, wait, &mut |_, ev| event = ev);
    (ok, event)
}

/// Within the cap (else ERROR 53400), take `key` if it is free: the event, or None when
/// it is busy (then this backend does not hold it in `mode`: a hold would have made the
/// request succeed at once). `fast`: the unguarded first attempt, for the one-key path
/// only (see `lockmgr::try_acquire_fast`).
#[inline]
fn try_key(key: Key, mode: Mode, scope: Scope, fast: bool) -> Option<Event> {
    if let Err(e) = cap::check_cap(key) {
        e.report(PgLogLevel::ERROR);
    }
    let got = if fast { lockmgr::try_acquire_fast(key, mode, scope) } else { lockmgr::try_acquire(key, mode, scope) };
    match got {
        Acquired::Granted => Some(Event::Immediate(true)),
        Acquired::AlreadyHeld => Some(Event::Immediate(false)),
        Acquired::NotAvailable => None,
    }
}

/// `keys[first]` is busy; `holds` are what this call took before it.
fn busy(
    keys: &[Key],
    first: usize,
    holds: Vec<Hold>,
    mode: Mode,
    scope: Scope,
    wait: Wait,
    on: &mut dyn FnMut(usize, Event),
) -> bool {
    match wait {
        Wait::No => {
            on(first, Event::Busy);
            undo(&holds, mode, scope);
            false
        }
        // SAFETY: reads a backend-global flag.
        Wait::Micros(_) if unsafe { pg_sys::IsInParallelMode() } => {
            // A per-call timeout needs a subtransaction, and parallel mode allows none.
            undo(&holds, mode, scope);
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INVALID_TRANSACTION_STATE,
                "cannot wait for a lock with a timeout during a parallel operation"
            );
        }
        Wait::Forever => wait_forever(keys, first, holds, mode, scope, on),
        Wait::Micros(_) => wait_in_subxact(keys, first, holds, mode, scope, wait, on),
    }
}

/// Wait with no deadline of our own, as the built-in does: in the caller's transaction,
/// no subtransaction (which would cost more than the lock itself on a contended lock, and
/// run while holding it). Every error of the wait (cancel, statement_timeout, the caller's
/// lock_timeout, a deadlock) propagates; before it does, this call gives back what it
/// took, including a lock granted in the instant the error was raised. A key is waited
/// for only after a non-waiting attempt found it busy (`keys[first]` in `acquire_all`,
/// the others here), so it was not held in this mode before the waiting request.
fn wait_forever(keys: &[Key], first: usize, holds: Vec<Hold>, mode: Mode, scope: Scope, on: &mut dyn FnMut(usize, Event)) -> bool {
    let holds = std::cell::RefCell::new(holds);
    // The key this call is sleeping on, if any: only that one can have been granted
    // behind the error's back.
    let waiting = std::cell::Cell::new(None);
    let (h, w) = (AssertUnwindSafe(&holds), AssertUnwindSafe(&waiting));
    PgTryBuilder::new(AssertUnwindSafe(|| {
        for (i, &key) in keys.iter().enumerate().skip(first) {
            // The first key was (or is likely) busy: wait for it. Later ones may be free.
            let immediate = if i == first { None } else { try_key(key, mode, scope, false) };
            let event = immediate.unwrap_or_else(|| {
                w.set(Some(key));
                let event = wait_for(key, mode, scope);
                w.set(None);
                event
            });
            cap::note_acquired(key, mode, scope);
            h.borrow_mut().push(Hold { key, in_subxact: false });
            on(i, event);
        }
    }))
    .catch_others(|e| {
        if let Some(key) = w.get() {
            give_back_edge_grant(key, mode, scope, false);
        }
        undo(&h.borrow(), mode, scope);
        e.rethrow()
    })
    .execute();
    true
}

fn wait_in_subxact(
    keys: &[Key],
    first: usize,
    mut holds: Vec<Hold>,
    mode: Mode,
    scope: Scope,
    wait: Wait,
    on: &mut dyn FnMut(usize, Event),
) -> bool {
    let deadline = match wait {
        Wait::Micros(us) => Some(now().saturating_add(us)),
        _ => None,
    };
    // SAFETY: the internal-subtransaction protocol of PL/pgSQL's exception blocks: note
    // the memory context and resource owner, begin, and restore both after the
    // subtransaction is released or rolled back.
    let (ctx, owner) = unsafe { (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner) };
    unsafe {
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(ctx);
    }
    // SAFETY: NewGUCNestLevel only bumps a counter; popped by AtEOXact_GUC or the rollback.
    let nest = deadline.map(|_| unsafe { pg_sys::NewGUCNestLevel() });

    let mut next = first;
    let mut timed_out_at = None;
    // Whether an error came from inside the waiting request for keys[next] (only then can
    // the lock have been granted behind the error's back), set right before that request.
    // Any other error (the cap's 53400, a full lock table) was raised before keys[next]
    // was requested, and a hold of it then is one the session had before this call.
    let mut waiting = false;
    #[allow(clippy::result_large_err)] // the closure's Err type is PgTryBuilder's CaughtError
    let result: Result<(), CaughtError> = PgTryBuilder::new(AssertUnwindSafe(|| {
        while next < keys.len() {
            let key = keys[next];
            // Keys after the one we had to wait for may well be free: only a real wait
            // counts as one.
            let event = match try_key(key, mode, scope, false) {
                Some(event) => event,
                None => {
                    if let Some(d) = deadline {
                        let left_ms = (d - now() + 999) / 1000;
                        if left_ms <= 0 {
                            timed_out_at = Some(next);
                            return Ok(());
                        }
                        set_lock_timeout(left_ms.min(i32::MAX as i64));
                    }
                    let t0 = now();
                    // busy just now, so not held in this mode before this request
                    waiting = true;
                    lockmgr::acquire_waiting(key, mode, scope);
                    waiting = false;
                    Event::Waited(now() - t0)
                }
            };
            cap::note_acquired(key, mode, scope);
            holds.push(Hold { key, in_subxact: true });
            on(next, event);
            next += 1;
        }
        Ok(())
    }))
    .catch_others(Err)
    .execute();

    let restore = || unsafe {
        // SAFETY: see above.
        pg_sys::MemoryContextSwitchTo(ctx);
        pg_sys::CurrentResourceOwner = owner;
    };
    match result {
        Ok(()) if timed_out_at.is_none() => {
            // SAFETY: pop our lock_timeout, then fold the subtransaction into the parent
            // (transaction locks taken in it move to the parent's resource owner).
            unsafe {
                if let Some(n) = nest {
                    pg_sys::AtEOXact_GUC(true, n);
                }
                pg_sys::ReleaseCurrentSubTransaction();
            }
            restore();
            true
        }
        Ok(()) => {
            // Deadline passed between keys, before waiting for the next one.
            unsafe { pg_sys::RollbackAndReleaseCurrentSubTransaction() };
            restore();
            on(timed_out_at.unwrap_or(next), Event::TimedOut);
            undo(&holds, mode, scope);
            false
        }
        Err(e) => {
            let code = e_code(&e);
            // SAFETY: rolls back to the state before BeginInternalSubTransaction; this
            // runs LockErrorCleanup, which leaves the wait queue or, when the lock was
            // granted at the last moment, records the grant (kept for a session lock).
            unsafe { pg_sys::RollbackAndReleaseCurrentSubTransaction() };
            restore();
            let key = keys[next];
            let granted_at_edge = waiting && scope == Scope::Session && lockmgr::held_by_me(key, mode);
            if granted_at_edge {
                cap::note_acquired(key, mode, scope);
                holds.push(Hold { key, in_subxact: true });
            }
            if deadline.is_some() && code == PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE {
                if granted_at_edge && next + 1 == keys.len() {
                    // The last lock came through as the timer fired: the call succeeded.
                    on(next, Event::Waited(0));
                    return true;
                }
                on(next, Event::TimedOut);
                undo(&holds, mode, scope);
                false
            } else {
                undo(&holds, mode, scope);
                e.rethrow()
            }
        }
    }
}

fn e_code(e: &CaughtError) -> PgSqlErrorCode {
    match e {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) | CaughtError::RustPanic { ereport: r, .. } => {
            r.sql_error_code()
        }
    }
}

fn set_lock_timeout(ms: i64) {
    let value = std::ffi::CString::new(ms.to_string()).expect("digits");
    // SAFETY: sets lock_timeout at the current GUC nest level (GUC_ACTION_SAVE), which
    // AtEOXact_GUC or the subtransaction rollback undoes; the caller's value is untouched.
    unsafe {
        pg_sys::set_config_option(
            c"lock_timeout".as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
    }
}
