//! Configuration settings (all under the `pg_named_locks.` prefix).

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// Capacity of the name registry. Postmaster-only because it sizes shared memory.
pub static MAX_NAMES: GucSetting<i32> = GucSetting::<i32>::new(DEFAULT_MAX_NAMES);

pub const DEFAULT_MAX_NAMES: i32 = 10_000;

/// Whether per-name statistics are counted (superuser-settable).
pub static TRACK_STATS: GucSetting<bool> = GucSetting::<bool>::new(true);

/// Distinct advisory locks one session may hold at once; 0 = no cap (superuser-settable).
pub static MAX_LOCKS_PER_SESSION: GucSetting<i32> = GucSetting::<i32>::new(1024);

/// `TRACK_STATS`, read on every lock call. `GucSetting::get` first checks that it runs
/// on PostgreSQL's thread (a thread-local lookup, a call into the dynamic linker); a
/// backend runs our code on that thread only, so the hot path reads the value directly.
#[inline]
pub fn track_stats() -> bool {
    // SAFETY: the cell PostgreSQL's GUC machinery writes, on this same thread, between
    // statements; a plain read of an initialised bool.
    unsafe { *TRACK_STATS.as_ptr() }
}

/// `MAX_LOCKS_PER_SESSION`, read on every lock call (see `track_stats`).
#[inline]
pub fn max_locks_per_session() -> i32 {
    // SAFETY: as in `track_stats`.
    unsafe { *MAX_LOCKS_PER_SESSION.as_ptr() }
}

/// Define the settings. `preloading`: PostgreSQL refuses (FATAL) to create a
/// PGC_POSTMASTER setting after startup, so without preloading max_names is a SIGHUP
/// setting (read from postgresql.conf, like the postmaster one) that sizes the registry
/// once, when the first backend creates it (see `registry::shmem`). It must be defined either way:
/// `MarkGUCPrefixReserved` below removes an undefined `pg_named_locks.*` placeholder, and
/// with it the value the configuration file set.
pub fn define(preloading: bool) {
    define_max_names(preloading);
    GucRegistry::define_bool_guc(
        c"pg_named_locks.track_stats",
        c"Counts acquisitions, waits, try failures and timeouts per lock name.",
        c"Shown by named_lock_stats. Needs the name registry.",
        &TRACK_STATS,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_named_locks.max_locks_per_session",
        c"Maximum number of distinct advisory locks one session may hold (0 = no cap).",
        c"Checked by the named lock functions before they request a new lock. Only locks \
          taken by name count; the built-in advisory lock functions are not capped. \
          Transaction locks count until their transaction ends.",
        &MAX_LOCKS_PER_SESSION,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::default(),
    );
    // Like pg_stat_statements: reject misspelled pg_named_locks.* settings.
    // SAFETY: a plain C call with a static NUL-terminated string.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"pg_named_locks".as_ptr()) };
}

/// The registry capacity this backend would create the registry with.
pub fn max_names() -> usize {
    MAX_NAMES.get().clamp(16, 10_000_000) as usize
}

fn define_max_names(preloading: bool) {
    GucRegistry::define_int_guc(
        c"pg_named_locks.max_names",
        c"Maximum number of lock names remembered in shared memory.",
        c"When full, names of locks no longer held are evicted, least recently used first. \
          Takes effect at server start with shared_preload_libraries; without preloading \
          (PostgreSQL 17+) the registry is created with the value in effect when the first \
          backend uses it after a server start.",
        &MAX_NAMES,
        16,
        10_000_000,
        if preloading { GucContext::Postmaster } else { GucContext::Sighup },
        GucFlags::default(),
    );
}
