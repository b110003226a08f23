//! pg_named_locks: PostgreSQL advisory locks addressed by name.
//!
//! Module map (one job each):
//! - [`keys`]     name → advisory-lock key (the md5 compatibility contract)
//! - [`namecache`] backend-local memo of name → md5
//! - [`names`]    argument validation: what counts as a usable lock name
//! - [`lockmgr`]  the lock primitives, straight on PostgreSQL's lock manager
//! - [`named`]    one named-lock operation: resolve, remember the name, lock
//! - [`registry`] the shared-memory name registry (key → name), its locking rules
//! - [`shmem`]    where the registry's memory comes from (preload or DSM registry)
//! - [`wait`]     all-or-nothing acquisition, deadlines, no lock left behind
//! - [`session`]  the per-session cap on held locks
//! - [`textarg`]  `text` arguments read in place on the hot path
//! - [`stats`]    per-name statistics: `named_lock_stats`
//! - [`guc`]      settings
//! - [`monitor`]  name look-ups and the `advisory_locks_v` view
//! - [`backend`]  backend-local state and the coarse clock
//! - [`api`]      the SQL-facing lock functions, thin wrappers over the above

use pgrx::prelude::*;

pub mod api;
pub mod backend;
pub mod error;
pub mod flatmap;
pub mod guc;
pub mod keys;
pub mod lockmgr;
pub mod md5;
pub mod monitor;
pub mod namecache;
pub mod named;
pub mod names;
pub mod pg;
pub mod registry;
pub mod session;
pub mod shmem;
pub mod stats;
pub mod textarg;
pub mod wait;

// The two-argument `pg_module_magic!(name, version)` form is broken on PostgreSQL 18 in
// pgrx 0.18.1; the explicit form fills PG 18's module name/version fields correctly.
::pgrx::pg_module_magic!(name = c"pg_named_locks", version = c"0.1.0");

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // SAFETY: a plain read of a flag the postmaster sets while loading libraries.
    let preloading = unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress };
    guc::define(preloading);
    // SAFETY: registers a plain function for this backend's transaction ends.
    unsafe { pgrx::pg_sys::RegisterXactCallback(Some(session::on_xact_end), std::ptr::null_mut()) };
    if preloading {
        shmem::install_hooks();
    }
}

#[cfg(test)]
mod multisession_tests;
#[cfg(test)]
mod multisession_timeouts;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        // Preloaded: the registry lives in the main shared memory segment, as in
        // production. Short deadlock_timeout so the deadlock tests resolve quickly.
        vec!["shared_preload_libraries = 'pg_named_locks'", "deadlock_timeout = '100ms'"]
    }
}
