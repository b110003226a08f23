//! Per-name statistics, pg_stat_statements style: counters live next to each name in
//! the registry and are updated with atomics on the lock path (no registry lock), read
//! by `named_lock_stats`, zeroed by `named_lock_stats_reset()` (not granted to PUBLIC).
//! Names follow the privacy rule of `advisory_locks_v`.

use pgrx::prelude::*;

use crate::monitor::privacy::Visibility;
use crate::pg::encoding::DbText;
use crate::registry::shmem;

fn ts(t: i64) -> Option<TimestampWithTimeZone> {
    (t != 0).then(|| TimestampWithTimeZone::try_from(t).ok()).flatten()
}

#[pg_extern(volatile, parallel_safe, name = "named_lock_stats")]
#[allow(clippy::type_complexity)]
fn named_lock_stats_fn() -> TableIterator<
    'static,
    (
        name!(lock_name, DbText),
        name!(key_kind, &'static str),
        name!(acquisitions, i64),
        name!(immediate_acquisitions, i64),
        name!(waits, i64),
        name!(total_wait_ms, f64),
        name!(max_wait_ms, f64),
        name!(try_failures, i64),
        name!(timeouts, i64),
        name!(last_acquired, Option<TimestampWithTimeZone>),
    ),
> {
    let Some(reg) = shmem::get() else { return TableIterator::empty() };
    let mut vis = Visibility::new();
    let rows: Vec<_> = reg
        .snapshot()
        .into_iter()
        .map(|e| {
            let [imm, waits, total, max, tryf, tmo] = e.stats;
            let acq = imm + waits;
            let kind = e.kind.as_str();
            (
                DbText::new(&vis.name(e.role, e.name)),
                kind,
                acq as i64,
                imm as i64,
                waits as i64,
                total as f64 / 1000.0,
                max as f64 / 1000.0,
                tryf as i64,
                tmo as i64,
                ts(e.last_acquired),
            )
        })
        .collect();
    TableIterator::new(rows)
}

/// Zero the statistics of every name (names stay registered).
#[pg_extern(volatile, parallel_safe)]
fn named_lock_stats_reset() {
    if let Some(reg) = shmem::get() {
        reg.reset_stats();
    }
}

extension_sql!(
    r#"
CREATE VIEW @extschema@.named_lock_stats AS SELECT * FROM @extschema@.named_lock_stats();
GRANT SELECT ON @extschema@.named_lock_stats TO PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.named_lock_stats_reset() FROM PUBLIC;
"#,
    name = "named_lock_stats_view",
    requires = [named_lock_stats_fn, named_lock_stats_reset],
);
