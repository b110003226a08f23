//! pg_named_locks: PostgreSQL advisory locks addressed by name.
//!
//! Module map (one job each):
//! - [`api`]                 the SQL-facing lock functions, thin wrappers over the below
//!   - [`api::named`]        the one-name functions, declared by hand (the hot path)
//!   - [`api::pair`]         the two-key ("pair") functions
//!   - [`api::many`]         the `_many` functions: many locks at once, all or nothing
//!   - [`api::keys`]         `named_lock_key` and `named_lock_key32`
//!   - [`api::fenced`]       the fenced functions and the token check
//!   - [`api::lease`]        leased locks, and "do I hold it?"
//! - [`lock`]                one named-lock operation: resolve, remember the name, lock
//!   - [`lock::wait`]        all-or-nothing acquisition, deadlines, no lock left behind
//!   - [`lock::cap`]         the per-session cap on held locks
//!   - [`lock::fence`]       fenced grants: the token, this session's token, the check
//!   - [`lock::lease`]       leased locks: this session's leases, renewal, their end
//! - [`fence`]               fencing tokens' shared state: the counter, its file, the grant records
//!   - [`fence::file`]       the counter's high-water mark on disk, written durably
//!   - [`fence::shmem`]      where the fence lives (preload or DSM registry)
//! - [`name`](mod@name)      lock names
//!   - [`name::validate`]    argument validation: what counts as a usable lock name
//!   - [`name::hash`]        name → advisory-lock key (the md5 compatibility contract)
//!   - [`name::memo`]        backend-local memo of name → md5
//! - [`registry`]            the shared-memory name registry (key → name), its locking rules
//!   - [`registry::layout`]  its shared-memory layout and size
//!   - [`registry::remember`] registering a name: lookup or insert, collisions, a full registry
//!   - `registry::evict`     freeing the least recently used names nobody holds
//!   - [`registry::shmem`]   where the registry's memory comes from (preload or DSM registry)
//! - [`monitor`]             name look-ups and the `advisory_locks_v` view
//!   - [`monitor::stats`]    per-name statistics: `named_lock_stats`
//!   - [`monitor::privacy`]  who may see a name
//! - [`pg`]                  every touch of PostgreSQL internals
//!   - [`pg::lockmgr`]       the lock primitives, straight on PostgreSQL's lock manager
//!   - [`pg::unguarded`]     PostgreSQL functions called without pgrx's FFI guard
//!   - [`pg::text`]          `text` arguments read in place on the hot path
//!   - [`pg::encoding`]      text across database encodings
//!   - [`pg::backend`]       backend-local state, the clocks, the current user
//!   - [`pg::timer`]         the lease timer (signal context) and the message that ends a session
//! - [`flatmap`]             hashbrown tables behind the memo and the cap, keyed by the caller's hash
//! - [`error`](mod@error)    errors and warnings raised from several modules
//! - [`guc`]                 settings
//! - `tests`                 tests with several real sessions

use pgrx::prelude::*;

pub mod api;
pub mod error;
pub mod fence;
pub mod flatmap;
pub mod guc;
pub mod lock;
pub mod monitor;
pub mod name;
pub mod pg;
pub mod registry;

// The two-argument `pg_module_magic!(name, version)` form is broken on PostgreSQL 18 in
// pgrx 0.18.1; the explicit form fills PG 18's module name/version fields correctly.
::pgrx::pg_module_magic!(name = c"pg_named_locks", version = c"0.3.0");

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // SAFETY: a plain read of a flag the postmaster sets while loading libraries.
    let preloading = unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress };
    guc::define(preloading);
    // SAFETY: registers a plain function for this backend's transaction ends.
    unsafe { pgrx::pg_sys::RegisterXactCallback(Some(lock::cap::on_xact_end), std::ptr::null_mut()) };
    if preloading {
        registry::shmem::install_hooks();
    }
}

#[cfg(test)]
mod tests;

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
