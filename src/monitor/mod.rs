//! Looking names up, and the `advisory_locks_v` view.
//!
//! Privacy: a name is data (DESIGN.md §5). The registry records the role that last used
//! each name; a caller sees it when it has that role's privileges or pg_read_all_stats
//! (the rule of pg_stat_activity's query text, in [`privacy`]), else `<insufficient
//! privilege>`. The view takes names only from `named_lock_registry()`, which applies
//! that rule itself, so the view needs no privilege logic a caller could get around.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::name::hash::key64;
use crate::name::validate::require_lockable;
use crate::pg::encoding::{to_database, DbText};
use crate::pg::lockmgr::{self, Key};
use crate::pg::text::Text;
use crate::registry::shmem;
use crate::registry::{Kind, Registry};
use privacy::Visibility;

pub mod privacy;
pub mod stats;

fn lookup(reg: Registry, key: Key) -> Option<DbText> {
    let mut found = reg.resolve(std::iter::once(key)).pop().flatten()?;
    Some(DbText::new(&Visibility::new().lock_name(&mut found, key)))
}

/// Remember a name for its key without locking (for clients that lock by key themselves).
#[pg_extern(volatile, parallel_restricted)]
fn register_lock_name(name: Option<Text>) -> i64 {
    let n = require_lockable(name.map(Text::as_str), "name");
    crate::lock::Target::named(Some(n)).remember(shmem::get(), crate::pg::backend::coarse_now());
    key64(n.as_bytes())
}

/// The name remembered for a bigint key, NULL when unknown.
#[pg_extern(volatile, parallel_safe, name = "named_lock_name")]
fn named_lock_name(key: i64) -> Option<DbText> {
    lookup(shmem::get()?, Key::Int64(key))
}

/// The name remembered for a two-key lock: "namespace:name", or "namespace:id" when only
/// the namespace is known; NULL when unknown.
#[pg_extern(volatile, parallel_safe, name = "named_lock_name")]
fn named_lock_name_pair(key1: i32, key2: i32) -> Option<DbText> {
    lookup(shmem::get()?, Key::Pair(key1, key2))
}

/// Pids holding `lock_named(name)` in this database now (empty when free); a prepared
/// transaction holding it shows as 0, as in `pg_blocking_pids`.
#[pg_extern(volatile, parallel_safe)]
fn named_lock_holders(name: Option<Text>) -> Vec<i32> {
    let want = crate::name::named_key(name.map(Text::as_str));
    // SAFETY: MyDatabaseId is set for the life of the backend.
    let db = unsafe { pg_sys::MyDatabaseId }.to_u32();
    let mut pids = Vec::new();
    lockmgr::for_each_advisory_lock(|d, key, l| {
        if d == db && key == want && l.holdMask != 0 {
            pids.push(l.pid);
        }
    });
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Every remembered name, keyed the way pg_locks shows advisory locks, with the names
/// the caller may not see replaced by `<insufficient privilege>`. The view's name source.
#[pg_extern(volatile, parallel_safe)]
#[allow(clippy::type_complexity)]
fn named_lock_registry() -> TableIterator<
    'static,
    (
        name!(kind, &'static str),
        name!(classid, pg_sys::Oid),
        name!(objid, Option<pg_sys::Oid>),
        name!(objsubid, i16),
        name!(lock_name, DbText),
        name!(truncated, bool),
        name!(held_by, Option<i32>),
        name!(held_since, Option<TimestampWithTimeZone>),
    ),
> {
    let Some(reg) = shmem::get() else { return TableIterator::empty() };
    let mut vis = Visibility::new();
    let rows: Vec<_> = reg
        .snapshot()
        .into_iter()
        .map(|e| {
            let hi = pg_sys::Oid::from(((e.key as u64) >> 32) as u32);
            let lo = pg_sys::Oid::from(e.key as u64 as u32);
            let (classid, objid, objsubid) = match e.kind {
                Kind::Bigint => (hi, Some(lo), 1i16),
                Kind::Pair => (hi, Some(lo), 2),
                // the namespace's 32-bit key is the pair's first half
                Kind::Namespace => (lo, None, 2),
            };
            let kind = e.kind.as_str();
            let held = (e.held_by != 0).then_some(e.held_by);
            let since = held.and_then(|_| TimestampWithTimeZone::try_from(e.held_since).ok());
            (kind, classid, objid, objsubid, DbText::new(&vis.name(e.role, e.name)), e.truncated, held, since)
        })
        .collect();
    TableIterator::new(rows)
}

/// One row per advisory lock held or awaited (every database), resolved to names: the
/// view's source. Reads the lock table once (`GetLockStatusData`, as `pg_locks` does)
/// and resolves every lock's name under one shared registry lock, so the view costs
/// about what `pg_locks` does instead of joining it to the whole registry. A
/// materialize-mode set-returning function (`InitMaterializedSRF`): every row goes
/// straight into the result tuplestore, without a function call per row.
///
/// `queue_position` is looked up only for waiting rows (`GetBlockerStatusData` per
/// waiter, which takes every partition lock, as `pg_blocking_pids` does): a lock table
/// where nobody waits costs nothing more. It comes from a second look at the queue, so
/// a waiter granted in between shows NULL.
#[pg_extern(sql = r#"
CREATE FUNCTION advisory_lock_status()
RETURNS TABLE (dbid oid, pid integer, lock_name text, key_kind text, lock_key bigint,
               key1 integer, key2 integer, mode text, granted boolean,
               waiting_since timestamptz, held_since timestamptz,
               queue_position integer, lease_expires_at timestamptz)
STRICT VOLATILE PARALLEL RESTRICTED ROWS 10000
LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
"#)]
fn advisory_lock_status(fcinfo: pg_sys::FunctionCallInfo) {
    struct Row {
        db: u32,
        pid: i32,
        key: Key,
        mode: i32,
        granted: bool,
        wait_start: i64,
    }
    let mut rows = Vec::new();
    // As pg_lock_status does, each held mode is a row and a wait is a row.
    lockmgr::for_each_advisory_lock(|db, key, l| {
        let row = |mode, granted, wait_start| Row { db, pid: l.pid, key, mode, granted, wait_start };
        for mode in 1..pg_sys::MAX_LOCKMODES as i32 {
            if l.holdMask & (1 << mode) != 0 {
                rows.push(row(mode, true, 0));
            }
        }
        if l.waitLockMode != pg_sys::NoLock as i32 {
            rows.push(row(l.waitLockMode, false, l.waitStart));
        }
    });
    let mut found = match shmem::get() {
        Some(reg) => reg.resolve(rows.iter().map(|r| r.key)),
        None => Vec::new(),
    };
    found.resize_with(rows.len(), || None);
    let positions: Vec<Option<i32>> = if rows.iter().any(|r| !r.granted) {
        rows.iter().map(|r| if r.granted || r.pid == 0 { None } else { lockmgr::queue_position(r.pid, r.db, r.key) }).collect()
    } else {
        Vec::new()
    };
    let mut vis = Visibility::new();
    // in the database encoding (pg::encoding): the bytes go into the text datums as they are
    let names: Vec<Option<Vec<u8>>> = rows
        .iter()
        .zip(found.iter_mut())
        .map(|(r, found)| found.as_mut().map(|f| to_database(&vis.lock_name(f, r.key)).into_owned()))
        .collect();
    // SAFETY: the materialize-mode SRF protocol: InitMaterializedSRF checks that the
    // caller accepts a materialized set and sets up the tuplestore and its descriptor
    // (13 columns, as declared above; 11 in a database still on 0.1.0 or 0.2.0, where
    // the same symbol is declared with the first 11: tuplestore_putvalues reads only
    // as many values as the descriptor has columns).
    let (store, desc) = unsafe {
        #[cfg(feature = "pg15")]
        pg_sys::SetSingleFuncCall(fcinfo, 0);
        #[cfg(not(feature = "pg15"))]
        pg_sys::InitMaterializedSRF(fcinfo, 0);
        let rsinfo = (*fcinfo).resultinfo.cast::<pg_sys::ReturnSetInfo>();
        ((*rsinfo).setResult, (*rsinfo).setDesc)
    };
    // SAFETY: one FFI guard for the whole loop instead of one per call: the closure only
    // borrows (it owns nothing that needs dropping), so if PostgreSQL raises (out of
    // memory, or a tuplestore that cannot spill to disk), the longjmp skips only plain
    // frames and pgrx turns it into an ordinary error.
    unsafe {
        pg_sys::ffi::pg_guard_ffi_boundary(|| {
            let text = |s: &[u8]| pg_sys::Datum::from(raw::cstring_to_text_with_len(s.as_ptr().cast(), s.len() as i32));
            for (i, r) in rows.iter().enumerate() {
                let f = found[i].as_ref();
                let mut values = [pg_sys::Datum::from(0usize); 13];
                let mut nulls = [false; 13];
                values[0] = pg_sys::Datum::from(r.db);
                match r.pid {
                    0 => nulls[1] = true,
                    pid => values[1] = pg_sys::Datum::from(pid),
                }
                match &names[i] {
                    Some(n) => values[2] = text(n),
                    None => nulls[2] = true,
                }
                match r.key {
                    Key::Int64(k) => {
                        values[3] = text(b"bigint");
                        values[4] = pg_sys::Datum::from(k);
                        nulls[5] = true;
                        nulls[6] = true;
                    }
                    Key::Pair(k1, k2) => {
                        values[3] = text(b"pair");
                        nulls[4] = true;
                        values[5] = pg_sys::Datum::from(k1);
                        values[6] = pg_sys::Datum::from(k2);
                    }
                }
                values[7] = match r.mode as u32 {
                    pg_sys::ExclusiveLock => text(b"exclusive"),
                    pg_sys::ShareLock => text(b"shared"),
                    m => pg_sys::Datum::from(raw::cstring_to_text(raw::GetLockmodeName(pg_sys::USER_LOCKMETHOD as _, m as _))),
                };
                values[8] = pg_sys::Datum::from(r.granted);
                match (r.granted, r.wait_start) {
                    (false, t) if t != 0 => values[9] = pg_sys::Datum::from(t),
                    _ => nulls[9] = true,
                }
                match f.filter(|f| r.granted && !f.namespace_only && f.held_by == r.pid && f.held_since != 0) {
                    Some(f) => values[10] = pg_sys::Datum::from(f.held_since),
                    None => nulls[10] = true,
                }
                match positions.get(i).copied().flatten() {
                    Some(p) => values[11] = pg_sys::Datum::from(p),
                    None => nulls[11] = true,
                }
                match f.filter(|f| {
                    r.granted && f.lease_pid == r.pid && f.lease_expires != 0 && r.mode == pg_sys::ExclusiveLock as i32
                }) {
                    Some(f) => values[12] = pg_sys::Datum::from(f.lease_expires),
                    None => nulls[12] = true,
                }
                raw::tuplestore_putvalues(store, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            }
        })
    }
}

// PostgreSQL functions called inside the single guard of `advisory_lock_status`.
use crate::pg::unguarded as raw;

/// The registry's state: where it lives, capacity, use, and what it could not do.
#[pg_extern(volatile, parallel_safe)]
#[allow(clippy::type_complexity)]
fn named_lock_registry_info() -> TableIterator<
    'static,
    (
        name!(storage, &'static str),
        name!(capacity, Option<i64>),
        name!(names, Option<i64>),
        name!(not_stored, Option<i64>),
        name!(evictions, Option<i64>),
        name!(collisions, Option<i64>),
    ),
> {
    use std::sync::atomic::Ordering::Relaxed;
    let row = match shmem::get() {
        None => ("none (needs shared_preload_libraries)", None, None, None, None, None),
        Some(reg) => {
            let h = reg.header();
            (
                if shmem::preloaded() { "shared_preload_libraries" } else { "dynamic shared memory" },
                Some(reg.capacity() as i64),
                Some(reg.used() as i64),
                Some(h.not_stored.load(Relaxed) as i64),
                Some(h.evictions.load(Relaxed) as i64),
                Some(h.collisions.load(Relaxed) as i64),
            )
        }
    };
    TableIterator::once(row)
}

extension_sql!(
    r#"
-- The locks and their names come from advisory_lock_status() (one lock-table snapshot,
-- names resolved in one registry pass); the view adds the database and session columns,
-- and pg_blocking_pids (which takes every lock-manager partition) only for waiting rows.
-- A plain view, so the planner inlines it and its references are bound here, not by the
-- caller's search_path. Both joins are provably at most one row per lock (pg_database by
-- its key, the sessions by DISTINCT ON (pid)), so a query that uses none of their
-- columns, count(*) say, skips them. The function's row estimate (ROWS 10000) makes the
-- planner hash the few sessions and stream the locks, however many there are. No
-- volatile function may read the sessions' columns (idle_for uses statement_timestamp,
-- not clock_timestamp): the planner keeps a volatile output even when nobody reads it,
-- and with it the join.

CREATE VIEW @extschema@.advisory_locks_v AS
SELECT d.datname AS database, l.pid, l.lock_name, l.key_kind, l.lock_key, l.key1, l.key2,
       l.mode, l.granted, l.waiting_since, l.held_since,
       CASE WHEN NOT l.granted AND l.pid IS NOT NULL
            THEN pg_catalog.pg_blocking_pids(l.pid) END AS blocked_by,
       a.usename, a.application_name, a.client_addr, a.state AS backend_state, a.state_change,
       CASE WHEN l.granted AND a.state OPERATOR(pg_catalog.=) ANY
                 (ARRAY['idle', 'idle in transaction', 'idle in transaction (aborted)'])
            THEN GREATEST(pg_catalog.statement_timestamp() OPERATOR(pg_catalog.-) a.state_change,
                          interval '0') END AS idle_for,
       l.queue_position, l.lease_expires_at
  FROM @extschema@.advisory_lock_status() l
  LEFT JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) l.dbid
  LEFT JOIN (SELECT DISTINCT ON (s.pid) s.pid, s.usename, s.application_name, s.client_addr,
                    s.state, s.state_change
               FROM pg_catalog.pg_stat_activity s) a ON a.pid OPERATOR(pg_catalog.=) l.pid;

GRANT SELECT ON @extschema@.advisory_locks_v TO PUBLIC;
"#,
    name = "advisory_locks_v",
    requires = [named_lock_registry, advisory_lock_status],
);

extension_sql!(
    r#"
-- The "orphan suspects": granted locks whose session has been idle (or idle in a
-- transaction) for at least min_idle, with how many sessions wait for each. Built on
-- advisory_locks_v, so the view's privacy rule is this function's: names the caller may
-- not see show as <insufficient privilege>, and sessions whose activity the caller may
-- not see (pg_stat_activity's rule) have no state, so they are not listed. STRICT: a
-- NULL min_idle lists nothing.
CREATE FUNCTION @extschema@.named_lock_idle_holders(min_idle interval DEFAULT '5 minutes')
RETURNS TABLE (pid integer, lock_name text, mode text, idle_for interval, backend_state text,
               waiters integer, application_name text, client_addr inet, database name,
               usename name, key_kind text, lock_key bigint, key1 integer, key2 integer,
               held_since timestamptz, lease_expires_at timestamptz)
STRICT VOLATILE PARALLEL RESTRICTED
LANGUAGE sql
AS $$
SELECT h.pid, h.lock_name, h.mode, h.idle_for, h.backend_state, h.waiters::integer,
       h.application_name, h.client_addr, h.database, h.usename, h.key_kind, h.lock_key,
       h.key1, h.key2, h.held_since, h.lease_expires_at
  FROM (SELECT v.*,
               pg_catalog.count(*) FILTER (WHERE NOT v.granted)
                 OVER (PARTITION BY v.database, v.key_kind, v.lock_key, v.key1, v.key2) AS waiters
          FROM @extschema@.advisory_locks_v v) h
 WHERE h.granted AND h.idle_for OPERATOR(pg_catalog.>=) min_idle
 ORDER BY h.idle_for DESC, h.pid
$$;
"#,
    name = "named_lock_idle_holders",
    requires = ["advisory_locks_v"],
);

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    /// First column of the first row; None for NULL or no row.
    fn text(q: &str) -> Option<String> {
        match Spi::get_one::<String>(q) {
            Err(pgrx::spi::SpiError::InvalidPosition) => None,
            r => r.unwrap(),
        }
    }

    fn my_lock_name(filter: &str) -> Option<String> {
        text(&format!("SELECT lock_name FROM advisory_locks_v WHERE pid = pg_backend_pid() AND {filter}"))
    }

    #[pg_test]
    fn registry_is_preloaded_in_tests() {
        assert_eq!(text("SELECT storage FROM named_lock_registry_info()").as_deref(), Some("shared_preload_libraries"));
    }

    #[pg_test]
    fn view_names_every_kind_of_lock() {
        Spi::run(
            "SELECT lock_named('mon-excl'), lock_named_shared('mon-shared'), \
                    xact_lock_named('mon-xact'), lock_pair('mon-ns', 'mon-item'), \
                    xact_lock_pair_shared('mon-acct', 42)",
        )
        .unwrap();
        let row = |name: &str| {
            Spi::get_three::<String, String, bool>(&format!(
                "SELECT key_kind, mode, held_since IS NOT NULL FROM advisory_locks_v \
                 WHERE pid = pg_backend_pid() AND lock_name = '{name}'"
            ))
            .unwrap()
        };
        assert_eq!(row("mon-excl"), (Some("bigint".into()), Some("exclusive".into()), Some(true)));
        assert_eq!(row("mon-shared"), (Some("bigint".into()), Some("shared".into()), Some(true)));
        assert_eq!(row("mon-xact"), (Some("bigint".into()), Some("exclusive".into()), Some(true)));
        assert_eq!(row("mon-ns:mon-item"), (Some("pair".into()), Some("exclusive".into()), Some(true)));
        // (namespace, id): only the namespace is remembered; no per-id holder time
        assert_eq!(row("mon-acct:42"), (Some("pair".into()), Some("shared".into()), Some(false)));
        let keys_ok = Spi::get_one::<bool>(
            "SELECT bool_and(CASE key_kind WHEN 'bigint' THEN lock_key = named_lock_key(lock_name) \
                    ELSE key1 = named_lock_key32(split_part(lock_name, ':', 1)) END) \
             FROM advisory_locks_v WHERE pid = pg_backend_pid() AND lock_name LIKE 'mon-%'",
        )
        .unwrap();
        assert_eq!(keys_ok, Some(true));
        Spi::run("SELECT unlock_named('mon-excl')").unwrap();
        assert_eq!(my_lock_name("lock_name = 'mon-excl'"), None, "released lock still shown");
    }

    #[pg_test]
    fn registered_name_labels_a_builtin_lock() {
        Spi::run("SELECT register_lock_name('mon-registered')").unwrap();
        Spi::run("SELECT pg_advisory_xact_lock(named_lock_key('mon-registered'))").unwrap();
        assert_eq!(my_lock_name("lock_key = named_lock_key('mon-registered')").as_deref(), Some("mon-registered"));
        // a key nobody registered shows by key only
        Spi::run("SELECT pg_advisory_xact_lock(123456789)").unwrap();
        assert_eq!(my_lock_name("lock_key = 123456789"), None);
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM advisory_locks_v WHERE pid = pg_backend_pid() AND lock_key = 123456789")
                .unwrap(),
            Some(1)
        );
    }

    #[pg_test]
    fn lookups_and_holders() {
        assert_eq!(
            Spi::get_one::<i64>("SELECT register_lock_name('mon-lookup') - named_lock_key('mon-lookup')").unwrap(),
            Some(0)
        );
        assert_eq!(text("SELECT named_lock_name(named_lock_key('mon-lookup'))").as_deref(), Some("mon-lookup"));
        assert_eq!(text("SELECT named_lock_name(987654321::bigint)"), None);
        Spi::run("SELECT lock_pair('mon-lns', 'x'), lock_pair('mon-lns', 7)").unwrap();
        assert_eq!(
            text("SELECT named_lock_name(named_lock_key32('mon-lns'), named_lock_key32('x'))").as_deref(),
            Some("mon-lns:x")
        );
        assert_eq!(text("SELECT named_lock_name(named_lock_key32('mon-lns'), 7)").as_deref(), Some("mon-lns:7"));
        assert_eq!(Spi::get_one::<bool>("SELECT named_lock_holders('mon-lookup') = '{}'::int[]").unwrap(), Some(true));
        Spi::run("SELECT lock_named('mon-lookup')").unwrap();
        assert_eq!(Spi::get_one::<bool>("SELECT named_lock_holders('mon-lookup') = ARRAY[pg_backend_pid()]").unwrap(), Some(true));
    }

    #[pg_test]
    fn long_names_hash_whole_and_store_truncated() {
        Spi::run("SELECT xact_lock_named(repeat('ü', 300) || 'end')").unwrap();
        let (name, truncated) = Spi::get_two::<String, bool>(
            "SELECT lock_name, truncated FROM named_lock_registry() \
             WHERE kind = 'bigint' AND lock_name LIKE 'üü%'",
        )
        .unwrap();
        let name = name.unwrap();
        assert_eq!(truncated, Some(true));
        assert!(name.ends_with('…'), "{name}");
        assert!(name.len() <= crate::registry::layout::NAME_BYTES + '…'.len_utf8());
        // the lock is on the hash of the whole name
        assert_eq!(
            Spi::get_one::<i64>(
                "SELECT count(*) FROM advisory_locks_v WHERE pid = pg_backend_pid() \
                 AND lock_key = named_lock_key(repeat('ü', 300) || 'end') AND lock_name LIKE '%…'"
            )
            .unwrap(),
            Some(1)
        );
    }

    /// md5('c5373') and md5('c45389') share their first 4 bytes (found by a birthday
    /// search), so lock_pair(ns, 'c5373') and lock_pair(ns, 'c45389') are one lock.
    #[pg_test]
    fn collisions_are_reported_not_merged() {
        assert_eq!(Spi::get_one::<bool>("SELECT named_lock_key32('c5373') = named_lock_key32('c45389')").unwrap(), Some(true));
        let before = Spi::get_one::<i64>("SELECT collisions FROM named_lock_registry_info()").unwrap().unwrap();
        Spi::run("SELECT xact_lock_pair('mon-coll', 'c5373')").unwrap();
        Spi::run("SELECT xact_lock_pair('mon-coll', 'c45389')").unwrap(); // WARNING
        let after = Spi::get_one::<i64>("SELECT collisions FROM named_lock_registry_info()").unwrap().unwrap();
        assert_eq!(after, before + 1);
        assert_eq!(
            text("SELECT named_lock_name(named_lock_key32('mon-coll'), named_lock_key32('c45389'))").as_deref(),
            Some("mon-coll:c5373"),
            "the first name keeps the key"
        );
    }
}
