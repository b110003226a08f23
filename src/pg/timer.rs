//! The lease timer: one timeout of PostgreSQL's own timeout machinery (timeout.c) in a
//! backend that holds leased locks, the check it makes in signal context, and the hook
//! that names the expired lease in the session's last message (DESIGN.md §8).
//!
//! Why a timeout of the holder's own and not a background worker that terminates it:
//! only the holder can tell, without a race, that it is idle. The timer handler runs in
//! the SIGALRM handler, in the backend itself; when it finds the session idle (or idle
//! in a transaction) past the lease, it raises the same flags SIGTERM does
//! (`ProcDiePending`), which PostgreSQL acts on at its next interrupt check: in the
//! client read the session is idle in, or, when a command arrived in the same instant,
//! before that command starts (PostgresMain checks interrupts before it runs one). A
//! statement that is running is never cut short: the timer then fires again every
//! `RECHECK_MS` until the session is idle or the lease was renewed.
//!
//! Registering the timeout and the hook happens on the first lease of a backend, so a
//! session that takes none runs no code of ours in either place.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, Ordering::Relaxed};

use pgrx::pg_sys;

use crate::pg::unguarded;

/// How often an expired lease of a busy session is looked at again.
pub const RECHECK_MS: i32 = 200;

/// The TimeoutId registered for leases, -1 before the first lease.
static TIMER: AtomicI32 = AtomicI32::new(-1);
/// The earliest lease end of this backend (a timestamptz), `i64::MAX` when it holds none.
/// Read by the handler in signal context: an atomic, not the lease table.
static DUE: AtomicI64 = AtomicI64::new(i64::MAX);
/// Set by the handler when it ends the session for a lease: the hook then words the
/// FATAL message.
static ENDING: AtomicBool = AtomicBool::new(false);
static mut PREV_EMIT_LOG_HOOK: pg_sys::emit_log_hook_type = None;

/// What the hook asks for, to word the message: (lock name, lease in µs, last renewal),
/// from the lease table (`lock::lease`). Must not raise or panic.
pub type Describe = fn() -> Option<(String, i64, i64)>;
static mut DESCRIBE: Option<Describe> = None;

/// Register the timeout and the log hook, once per backend. Done before the first
/// leased lock is taken: `RegisterTimeout` raises FATAL when every user timeout slot is
/// taken (ten, shared with other extensions), and then nothing is held yet.
pub fn register(describe: Describe) {
    if TIMER.load(Relaxed) >= 0 {
        return;
    }
    // SAFETY: RegisterTimeout stores the handler in timeout.c's table (FATAL, not a
    // longjmp, when it cannot);
    // the hook variables are backend-global and this backend is single-threaded.
    unsafe {
        let id = unguarded::RegisterTimeout(crate::pg::USER_TIMEOUT, Some(on_timer));
        DESCRIBE = Some(describe);
        PREV_EMIT_LOG_HOOK = pg_sys::emit_log_hook;
        pg_sys::emit_log_hook = Some(on_emit_log);
        TIMER.store(id, Relaxed);
    }
}

/// Fire at `due` (the earliest lease end), and every `RECHECK_MS` after it until
/// disarmed or armed again.
pub fn arm(due: i64) {
    let id = TIMER.load(Relaxed);
    debug_assert!(id >= 0, "register first");
    DUE.store(due, Relaxed);
    // SAFETY: a registered TimeoutId; enable_timeout_every replaces a pending firing of
    // the same timeout. It raises only FATAL when setitimer fails.
    unsafe { unguarded::enable_timeout_every(id, due, RECHECK_MS) };
}

/// No lease left: stop the timer.
pub fn disarm() {
    DUE.store(i64::MAX, Relaxed);
    let id = TIMER.load(Relaxed);
    if id >= 0 {
        // SAFETY: a registered TimeoutId; disabling an inactive timeout is a no-op.
        unsafe { unguarded::disable_timeout(id, false) };
    }
}

/// Whether the session is between statements: what pg_stat_activity shows as `idle`,
/// `idle in transaction` or `idle in transaction (aborted)`. Signal-safe: one read of
/// this backend's own status entry, which only this process writes.
fn idle() -> bool {
    // SAFETY: MyBEEntry is this backend's PgBackendStatus in shared memory (or NULL
    // before it is set up); st_state is an aligned enum, written by this process only,
    // so a read in a signal handler sees either the old or the new value.
    unsafe {
        let be = pg_sys::MyBEEntry;
        if be.is_null() {
            return false;
        }
        let st = std::ptr::read_volatile(&raw const (*be).st_state);
        matches!(
            st,
            pg_sys::BackendState::STATE_IDLE
                | pg_sys::BackendState::STATE_IDLEINTRANSACTION
                | pg_sys::BackendState::STATE_IDLEINTRANSACTION_ABORTED
        )
    }
}

/// The timeout handler, in signal context (timeout.c's SIGALRM handler, which has
/// already set the process latch): only atomics, plain globals and the clock; nothing
/// that allocates, takes a lock, raises or panics.
unsafe extern "C-unwind" fn on_timer() {
    let due = DUE.load(Relaxed);
    // SAFETY: GetCurrentTimestamp is gettimeofday() converted (timeout.c calls it in the
    // same handler); proc_exit_inprogress is a plain flag.
    unsafe {
        if due == i64::MAX || unguarded::GetCurrentTimestamp() < due || !idle() || pg_sys::proc_exit_inprogress {
            return;
        }
        ENDING.store(true, Relaxed);
        // What die() (SIGTERM) sets: the FATAL comes at the next CHECK_FOR_INTERRUPTS.
        std::ptr::write_volatile(&raw mut pg_sys::ProcDiePending, 1);
        std::ptr::write_volatile(&raw mut pg_sys::InterruptPending, 1);
    }
}

/// The FATAL that ends a session for its lease says so, instead of PostgreSQL's
/// "terminating connection due to administrator command" (same SQLSTATE, 57P01), in the
/// server log and to the client. Called inside `EmitErrorReport`, in ErrorContext: must
/// not raise or unwind (a panic is caught; a failed palloc there is PostgreSQL's own
/// error recursion, which it handles).
unsafe extern "C-unwind" fn on_emit_log(edata: *mut pg_sys::ErrorData) {
    // SAFETY: edata is the error being reported; ErrorContext is current.
    unsafe {
        if ENDING.load(Relaxed)
            && (*edata).elevel == pg_sys::FATAL as i32
            && (*edata).sqlerrcode == pgrx::PgSqlErrorCode::ERRCODE_ADMIN_SHUTDOWN as i32
        {
            ENDING.store(false, Relaxed);
            if let Ok(Some(words)) = std::panic::catch_unwind(wording) {
                let [msg, detail, hint] = words.map(|s| std::ffi::CString::new(s).unwrap_or_default());
                (*edata).message = unguarded::pstrdup(msg.as_ptr());
                (*edata).detail = unguarded::pstrdup(detail.as_ptr());
                (*edata).hint = unguarded::pstrdup(hint.as_ptr());
            }
        }
        if let Some(prev) = PREV_EMIT_LOG_HOOK {
            prev(edata);
        }
    }
}

fn wording() -> Option<[String; 3]> {
    // SAFETY: set once in `register`, before the hook is installed.
    let (name, lease_us, renewed) = unsafe { DESCRIBE }?()?;
    let lease = fmt_secs(lease_us);
    let since = fmt_secs(crate::pg::backend::precise_now() - renewed);
    Some([
        format!("terminating connection because the lease on lock \"{name}\" expired"),
        format!(
            "The session held the lock under a lease of {lease}, taken or last renewed {since} ago; the lease ran out without renewal and the session was idle. Ending the session released its locks."
        ),
        "Renew the lease with named_lock_renew() well within its length, or take a longer lease.".into(),
    ])
}

fn fmt_secs(us: i64) -> String {
    let s = us as f64 / 1e6;
    if s.fract().abs() < 1e-9 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}
