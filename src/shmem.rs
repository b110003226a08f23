//! Where the registry's shared memory comes from.
//!
//! - Preloaded (`shared_preload_libraries = 'pg_named_locks'`, every version): requested in
//!   `shmem_request_hook` and laid out in `shmem_startup_hook`, sized from
//!   `pg_named_locks.max_names`, as pg_stat_statements does. A crash restart re-runs the
//!   startup hook on fresh shared memory, so the registry starts empty and consistent.
//! - Not preloaded, PostgreSQL 17+: the first backend that needs it creates a named DSM
//!   segment through the DSM registry (`GetNamedDSMSegment`); later backends attach.
//! - Not preloaded, PostgreSQL 15/16: there is no registry. Locking works; names are not
//!   remembered, and a NOTICE (once per session) says why.

use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering::Relaxed};

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::backend::BackendLocal;
use crate::guc;
use crate::registry::{self, Registry};

const SEGMENT_NAME: &std::ffi::CStr = c"pg_named_locks registry";
const TRANCHE_NAME: &std::ffi::CStr = c"pg_named_locks";

/// This process's mapping of the registry, null until attached.
static REGISTRY: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static PRELOADED: AtomicBool = AtomicBool::new(false);
static mut PREV_SHMEM_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_SHMEM_STARTUP: pg_sys::shmem_startup_hook_type = None;

static TRANCHE_REGISTERED: BackendLocal<bool> = BackendLocal::new(false);
static NOTICED: BackendLocal<bool> = BackendLocal::new(false);

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
        pg_sys::RequestAddinShmemSpace(registry::shmem_size(capacity()));
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn shmem_startup() {
    // SAFETY: the standard ShmemInitStruct protocol under AddinShmemInitLock (the 21st
    // main LWLock, as in pgrx's own PgLwLock); `found` tells whether to lay it out.
    unsafe {
        if let Some(prev) = PREV_SHMEM_STARTUP {
            prev();
        }
        let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let size = registry::shmem_size(capacity());
        let mut found = false;
        let mem = pg_sys::ShmemInitStruct(SEGMENT_NAME.as_ptr(), size, &mut found).cast::<u8>();
        if !found {
            Registry::init(mem, capacity(), pg_sys::LWLockNewTrancheId());
        }
        pg_sys::LWLockRelease(init_lock);
        REGISTRY.store(mem, Relaxed);
    }
}

#[cfg(any(feature = "pg17", feature = "pg18"))]
#[pg_guard]
unsafe extern "C-unwind" fn dsm_init(mem: *mut std::ffi::c_void) {
    // SAFETY: the DSM registry calls this once, under its lock, on a fresh segment of the
    // size we asked for, before any other backend can see it.
    unsafe {
        Registry::init(mem.cast(), capacity(), pg_sys::LWLockNewTrancheId());
    }
}

#[cfg(any(feature = "pg17", feature = "pg18"))]
fn attach_dsm() -> *mut u8 {
    let mut found = false;
    // SAFETY: GetNamedDSMSegment creates or attaches the segment and pins the mapping
    // for the life of this backend; it raises an ERROR rather than returning null.
    unsafe {
        pg_sys::GetNamedDSMSegment(
            SEGMENT_NAME.as_ptr(),
            registry::shmem_size(capacity()),
            Some(dsm_init),
            &mut found,
        )
        .cast()
    }
}

#[cfg(not(any(feature = "pg17", feature = "pg18")))]
fn attach_dsm() -> *mut u8 {
    std::ptr::null_mut()
}

/// The registry, attaching on first use. None on PostgreSQL 15/16 without preloading
/// (after one NOTICE per session).
#[inline(always)]
pub fn get() -> Option<Registry> {
    let mem = REGISTRY.load(Relaxed);
    if !mem.is_null() && TRANCHE_REGISTERED.get() {
        // SAFETY: `get_slow` attached this registry (checking its layout) earlier in
        // this backend, and it stays mapped.
        return Some(unsafe { Registry::attached(mem) });
    }
    get_slow()
}

fn get_slow() -> Option<Registry> {
    let mut mem = REGISTRY.load(Relaxed);
    if mem.is_null() && !preloaded() {
        mem = attach_dsm();
        REGISTRY.store(mem, Relaxed);
    }
    if mem.is_null() {
        if !NOTICED.get() {
            NOTICED.set(true);
            pgrx::pg_sys::panic::ErrorReport::new(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                "pg_named_locks: lock names are not remembered: the library is not preloaded",
                "pg_named_locks",
            )
            .set_detail("Locking works, but monitoring shows advisory locks by key only.")
            .set_hint("On PostgreSQL 15 and 16, add pg_named_locks to shared_preload_libraries and restart.")
            .report(PgLogLevel::NOTICE);
        }
        return None;
    }
    // SAFETY: mem was laid out by Registry::init and stays mapped for this backend.
    let reg = unsafe { Registry::attach(mem) };
    if !TRANCHE_REGISTERED.get() {
        TRANCHE_REGISTERED.set(true);
        // SAFETY: names the tranche for wait-event reporting in this backend.
        unsafe { pg_sys::LWLockRegisterTranche(reg.tranche_id(), TRANCHE_NAME.as_ptr()) };
    }
    Some(reg)
}
