//! Where the fence lives: the main shared memory when preloaded (requested and laid out
//! by the registry's shmem hooks, so a crash restart lays it out again and re-reads the
//! high-water mark), else on PostgreSQL 17+ a named DSM segment (its size depends only
//! on settings fixed at server start, so every backend asks for the same size). On 15/16
//! without preloading there is none, and the fenced functions say so.

use std::sync::atomic::{AtomicPtr, Ordering::Relaxed};

use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use super::{shmem_size, sizing, Fence};
use crate::pg::backend::BackendLocal;

const SEGMENT_NAME: &std::ffi::CStr = c"pg_named_locks fence";
const TRANCHE_NAME: &std::ffi::CStr = c"pg_named_locks_fence";

static FENCE: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static REGISTERED: BackendLocal<bool> = BackendLocal::new(false);

/// The preload shmem request (from the registry's request hook).
pub fn request() {
    // SAFETY: called in the postmaster's shmem request phase.
    unsafe { pg_sys::RequestAddinShmemSpace(shmem_size(sizing())) };
}

/// The preload shmem startup (from the registry's startup hook, AddinShmemInitLock held).
pub fn startup() {
    let mut found = false;
    // SAFETY: the ShmemInitStruct protocol; the caller holds AddinShmemInitLock.
    unsafe {
        let mem = pg_sys::ShmemInitStruct(SEGMENT_NAME.as_ptr(), shmem_size(sizing()), &mut found).cast::<u8>();
        if !found {
            Fence::init(mem, sizing(), pg_sys::LWLockNewTrancheId());
        }
        FENCE.store(mem, Relaxed);
    }
}

#[cfg(any(feature = "pg17", feature = "pg18"))]
#[pg_guard]
unsafe extern "C-unwind" fn dsm_init(mem: *mut std::ffi::c_void) {
    // SAFETY: the DSM registry calls this once, under its lock, on a fresh segment of
    // shmem_size(sizing()) bytes.
    unsafe { Fence::init(mem.cast(), sizing(), pg_sys::LWLockNewTrancheId()) };
}

#[cfg(any(feature = "pg17", feature = "pg18"))]
fn attach_dsm() -> *mut u8 {
    let mut found = false;
    // SAFETY: creates or attaches the segment (raising on failure, before any lock of
    // the caller is taken) and keeps it mapped for the backend's life.
    unsafe { pg_sys::GetNamedDSMSegment(SEGMENT_NAME.as_ptr(), shmem_size(sizing()), Some(dsm_init), &mut found).cast() }
}

#[cfg(not(any(feature = "pg17", feature = "pg18")))]
fn attach_dsm() -> *mut u8 {
    std::ptr::null_mut()
}

/// The fence, or the ERROR that says why there is none. Call before taking any lock.
pub fn get() -> Fence {
    let mut mem = FENCE.load(Relaxed);
    if mem.is_null() && !crate::registry::shmem::preloaded() {
        mem = attach_dsm();
        FENCE.store(mem, Relaxed);
    }
    // SAFETY: laid out by Fence::init (checked by its magic), mapped for the backend's life.
    let fence = (!mem.is_null()).then(|| unsafe { Fence::attach(mem) }).flatten();
    let Some(fence) = fence else { unavailable() };
    if !REGISTERED.get() {
        REGISTERED.set(true);
        // SAFETY: names the tranche for wait-event reporting in this backend.
        unsafe { pg_sys::LWLockRegisterTranche(fence.tranche_id(), TRANCHE_NAME.as_ptr()) };
    }
    fence
}

/// The fence when this backend already attached it (for the plain lock path's hook).
pub fn attached() -> Option<Fence> {
    let mem = FENCE.load(Relaxed);
    // SAFETY: as in `get`: only ever set to an attached fence's memory.
    (!mem.is_null()).then(|| unsafe { Fence::attach(mem) }).flatten()
}

#[cold]
fn unavailable() -> ! {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        "fencing tokens need pg_named_locks in shared_preload_libraries",
        "pg_named_locks",
    )
    .set_detail("The fencing counter lives in shared memory, which PostgreSQL 15 and 16 give only to a preloaded library.")
    .set_hint("Add pg_named_locks to shared_preload_libraries in postgresql.conf and restart the server.")
    .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}
