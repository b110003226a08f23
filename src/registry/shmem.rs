//! Where the registry's shared memory comes from.
//!
//! - Preloaded (`shared_preload_libraries = 'pg_named_locks'`, every version): requested in
//!   `shmem_request_hook` and laid out in `shmem_startup_hook`, sized from
//!   `pg_named_locks.max_names`, as pg_stat_statements does. A crash restart re-runs the
//!   startup hook on fresh shared memory, so the registry starts empty and consistent.
//! - Not preloaded, PostgreSQL 17+: the first backend that needs it creates a named DSM
//!   segment through the DSM registry (`GetNamedDSMSegment`); later backends attach. Its
//!   size follows `pg_named_locks.max_names` as the creating backend saw it, which a
//!   small fixed-size segment records first, so that every backend asks for the segment
//!   with the size it was created with (the DSM registry raises on a size mismatch, and
//!   postgresql.conf can change between two backends' starts).
//! - Not preloaded, PostgreSQL 15/16: there is no registry. Locking works; names are not
//!   remembered, and a NOTICE (once per session) says why.
//! - If the registry cannot be had (out of dynamic shared memory, a segment that is not
//!   ours), locking goes on without names, and a WARNING (once per session) says why.

use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering::Relaxed};

use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;

use crate::guc;
use crate::pg::backend::BackendLocal;
use crate::registry::{layout, Registry};

const SEGMENT_NAME: &std::ffi::CStr = c"pg_named_locks registry";
const TRANCHE_NAME: &std::ffi::CStr = c"pg_named_locks";

/// This process's mapping of the registry, null until attached.
static REGISTRY: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static PRELOADED: AtomicBool = AtomicBool::new(false);
static mut PREV_SHMEM_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_SHMEM_STARTUP: pg_sys::shmem_startup_hook_type = None;

static TRANCHE_REGISTERED: BackendLocal<bool> = BackendLocal::new(false);
static NOTICED: BackendLocal<bool> = BackendLocal::new(false);
/// The registry could not be attached in this backend: not tried again.
static FAILED: BackendLocal<bool> = BackendLocal::new(false);

fn capacity() -> usize {
    guc::max_names()
}

pub fn preloaded() -> bool {
    PRELOADED.load(Relaxed)
}

/// Called from _PG_init while shared_preload_libraries is being processed.
pub fn install_hooks() {
    PRELOADED.store(true, Relaxed);
    // SAFETY: _PG_init runs single-threaded in the postmaster before any hook can fire;
    // we chain to whatever hook was installed before us.
    unsafe {
        PREV_SHMEM_REQUEST = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(shmem_request);
        PREV_SHMEM_STARTUP = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(shmem_startup);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn shmem_request() {
    // SAFETY: called by the postmaster in the shmem request phase; chaining is required.
    unsafe {
        if let Some(prev) = PREV_SHMEM_REQUEST {
            prev();
        }
        pg_sys::RequestAddinShmemSpace(layout::shmem_size(capacity()));
    }
    crate::fence::shmem::request();
}

#[pg_guard]
unsafe extern "C-unwind" fn shmem_startup() {
    // SAFETY: the standard ShmemInitStruct protocol under AddinShmemInitLock (the 21st
    // main LWLock, as in pgrx's own PgLwLock); `found` tells whether to lay it out.
    unsafe {
        if let Some(prev) = PREV_SHMEM_STARTUP {
            prev();
        }
        let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(crate::pg::ADDIN_SHMEM_INIT_LOCK)).lock;
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let size = layout::shmem_size(capacity());
        let mut found = false;
        let mem = pg_sys::ShmemInitStruct(SEGMENT_NAME.as_ptr(), size, &mut found).cast::<u8>();
        if !found {
            Registry::init(mem, capacity(), pg_sys::LWLockNewTrancheId());
        }
        crate::fence::shmem::startup();
        pg_sys::LWLockRelease(init_lock);
        REGISTRY.store(mem, Relaxed);
    }
}

/// The fixed-size DSM segment that records the registry's capacity (see the module doc).
#[cfg(any(feature = "pg17", feature = "pg18"))]
const SIZE_SEGMENT_NAME: &std::ffi::CStr = c"pg_named_locks registry size";

/// The capacity `dsm_init` lays the registry out for: set right before the
/// GetNamedDSMSegment call that may run it.
#[cfg(any(feature = "pg17", feature = "pg18"))]
static DSM_CAPACITY: BackendLocal<usize> = BackendLocal::new(0);

#[cfg(any(feature = "pg17", feature = "pg18"))]
#[pg_guard]
unsafe extern "C-unwind" fn dsm_size_init(mem: *mut std::ffi::c_void) {
    // SAFETY: the DSM registry calls this once, under its lock, on a fresh segment of
    // size_of::<u64>() bytes, before any other backend can see it.
    unsafe { mem.cast::<u64>().write(capacity() as u64) };
}

#[cfg(any(feature = "pg17", feature = "pg18"))]
#[pg_guard]
unsafe extern "C-unwind" fn dsm_init(mem: *mut std::ffi::c_void) {
    // SAFETY: as in `dsm_size_init`, on a segment of shmem_size(DSM_CAPACITY) bytes.
    unsafe {
        Registry::init(mem.cast(), DSM_CAPACITY.get(), pg_sys::LWLockNewTrancheId());
    }
}

/// Create or attach the registry in dynamic shared memory. Raises (through pgrx's
/// guard) when that fails; see `attach_dsm_or_report`.
#[cfg(any(feature = "pg17", feature = "pg18"))]
fn attach_dsm() -> *mut u8 {
    let mut found = false;
    // SAFETY: GetNamedDSMSegment creates or attaches a segment and pins the mapping for
    // the life of this backend; it raises an ERROR rather than returning null. The size
    // segment holds one u64, written by `dsm_size_init` before anyone could read it.
    unsafe {
        let size = pg_sys::GetNamedDSMSegment(SIZE_SEGMENT_NAME.as_ptr(), size_of::<u64>(), Some(dsm_size_init), &mut found);
        let cap = (size.cast::<u64>().read() as usize).clamp(16, 10_000_000);
        DSM_CAPACITY.set(cap);
        pg_sys::GetNamedDSMSegment(SEGMENT_NAME.as_ptr(), layout::shmem_size(cap), Some(dsm_init), &mut found).cast()
    }
}

#[cfg(not(any(feature = "pg17", feature = "pg18")))]
fn attach_dsm() -> *mut u8 {
    std::ptr::null_mut()
}

/// `attach_dsm` inside an internal subtransaction (as a PL/pgSQL exception block does),
/// so that its failure (out of dynamic shared memory, say) is rolled back cleanly, the
/// DSM registry's lock included, and reported as a WARNING instead of failing the lock
/// call: locking does not need the registry. Null when there is no registry.
fn attach_dsm_or_report() -> *mut u8 {
    // SAFETY: reads a backend-global flag. Parallel mode allows no subtransaction: try
    // again on a later call.
    if unsafe { pg_sys::IsInParallelMode() } {
        return std::ptr::null_mut();
    }
    // SAFETY: the internal-subtransaction protocol (see `lock::wait::wait_in_subxact`).
    let (ctx, owner) = unsafe { (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner) };
    unsafe {
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(ctx);
    }
    #[allow(clippy::result_large_err)] // the closure's Err type is PgTryBuilder's CaughtError
    let attached = PgTryBuilder::new(|| Ok(attach_dsm())).catch_others(Err).execute();
    // SAFETY: ends the subtransaction begun above and restores the caller's context.
    unsafe {
        match attached {
            Ok(_) => pg_sys::ReleaseCurrentSubTransaction(),
            Err(_) => pg_sys::RollbackAndReleaseCurrentSubTransaction(),
        }
        pg_sys::MemoryContextSwitchTo(ctx);
        pg_sys::CurrentResourceOwner = owner;
    }
    match attached {
        Ok(mem) => mem,
        Err(e) => {
            let message = match &e {
                CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) | CaughtError::RustPanic { ereport: r, .. } => {
                    r.message().to_string()
                }
            };
            unavailable(&message);
            std::ptr::null_mut()
        }
    }
}

/// The registry cannot be used in this backend: said once, then locking goes on without it.
#[cold]
fn unavailable(why: &str) {
    FAILED.set(true);
    crate::error::warn(
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("pg_named_locks: lock names are not remembered in this session: {why}"),
            "pg_named_locks",
        )
        .set_detail("Locking works, but monitoring shows this session's advisory locks by key only.")
        .set_hint(
            "Add pg_named_locks to shared_preload_libraries and restart, so that the registry lives in the main shared memory.",
        ),
        PgLogLevel::WARNING,
    );
}

/// The registry, attaching on first use. None on PostgreSQL 15/16 without preloading
/// (after one NOTICE per session).
#[inline(always)]
pub fn get() -> Option<Registry> {
    match attached() {
        Some(reg) => Some(reg),
        None => get_slow(),
    }
}

/// The registry if this backend has already attached it, without attaching: for
/// callers that run where no subtransaction may start (transaction callbacks, backend
/// exit).
#[inline(always)]
pub fn attached() -> Option<Registry> {
    let mem = REGISTRY.load(Relaxed);
    if !mem.is_null() && TRANCHE_REGISTERED.get() {
        // SAFETY: `get_slow` attached this registry (checking its layout) earlier in
        // this backend, and it stays mapped.
        return Some(unsafe { Registry::attached(mem) });
    }
    None
}

#[cold]
fn get_slow() -> Option<Registry> {
    if FAILED.get() {
        return None;
    }
    let mut mem = REGISTRY.load(Relaxed);
    // (15 and 16 have no DSM registry: nothing to attach, and no subtransaction to pay
    // for on every call)
    if mem.is_null() && !preloaded() && cfg!(any(feature = "pg17", feature = "pg18")) {
        mem = attach_dsm_or_report();
        REGISTRY.store(mem, Relaxed);
        if FAILED.get() {
            return None;
        }
    }
    if mem.is_null() {
        if !NOTICED.get() && cfg!(not(any(feature = "pg17", feature = "pg18"))) {
            NOTICED.set(true);
            crate::error::warn(
                pgrx::pg_sys::panic::ErrorReport::new(
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    "pg_named_locks: lock names are not remembered: the library is not preloaded",
                    "pg_named_locks",
                )
                .set_detail("Locking works, but monitoring shows advisory locks by key only.")
                .set_hint("On PostgreSQL 15 and 16, add pg_named_locks to shared_preload_libraries and restart."),
                PgLogLevel::NOTICE,
            );
        }
        return None;
    }
    // SAFETY: mem was laid out by Registry::init (or is not ours: attach checks the
    // layout's magic) and stays mapped for this backend.
    let Some(reg) = (unsafe { Registry::attach(mem) }) else {
        REGISTRY.store(std::ptr::null_mut(), Relaxed);
        unavailable("its shared memory holds no registry of this version");
        return None;
    };
    if !TRANCHE_REGISTERED.get() {
        TRANCHE_REGISTERED.set(true);
        // SAFETY: names the tranche for wait-event reporting in this backend.
        unsafe { pg_sys::LWLockRegisterTranche(reg.tranche_id(), TRANCHE_NAME.as_ptr()) };
    }
    Some(reg)
}
