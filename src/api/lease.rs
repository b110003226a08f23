//! Leased locks and "do I hold it?" (DESIGN.md §8): `lock_named_lease`,
//! `named_lock_renew`, `named_lock_held`, `named_lock_held_shared`,
//! `named_lock_hold_count`. All read or change this session's state only, so all are
//! VOLATILE and PARALLEL RESTRICTED (a parallel worker has a lock table of its own).

use pgrx::prelude::*;

use crate::lock::wait::Wait;
use crate::lock::{self, lease, Target};
use crate::name::named_key;
use crate::pg::lockmgr::{self, Key, Mode};
use crate::pg::text::Text;

fn key_of(name: Option<Text>) -> Key {
    named_key(name.map(Text::as_str))
}

/// Take `name` as a session lock, waiting like `lock_named`, under a lease of `lease`
/// (at least 1 second): if the lease runs out without `named_lock_renew` while the
/// session is idle, the server ends the session. Always true (it waits).
#[pg_extern(volatile, parallel_restricted, name = "lock_named_lease")]
fn lock_named_lease(name: Option<Text>, lease: Option<Interval>) -> bool {
    let t = Target::named(name.map(Text::as_str));
    lease::acquire(&t, lease::duration(lease), Wait::Forever)
}

/// `lock_named_lease` waiting at most `timeout`: false when it passed (nothing held).
#[pg_extern(volatile, parallel_restricted, name = "lock_named_lease")]
fn lock_named_lease_timeout(name: Option<Text>, lease: Option<Interval>, timeout: Option<Interval>) -> bool {
    let t = Target::named(name.map(Text::as_str));
    let us = lease::duration(lease);
    lease::acquire(&t, us, lock::timeout(timeout))
}

/// Start the lease of `name` again, at its length; false when this session does not
/// hold a leased lock of that name.
#[pg_extern(volatile, parallel_restricted)]
fn named_lock_renew(name: Option<Text>) -> bool {
    let Key::Int64(k) = key_of(name) else { unreachable!() };
    lease::renew(k)
}

/// Whether this session holds `lock_named(name)` (exclusive, session or transaction
/// scope): the backend-local lock table only, no shared memory.
#[pg_extern(volatile, parallel_restricted)]
fn named_lock_held(name: Option<Text>) -> bool {
    lockmgr::held_by_me(key_of(name), Mode::Exclusive)
}

/// Whether this session holds `lock_named_shared(name)` (either scope).
#[pg_extern(volatile, parallel_restricted)]
fn named_lock_held_shared(name: Option<Text>) -> bool {
    lockmgr::held_by_me(key_of(name), Mode::Shared)
}

/// How many holds of `name` this session has: exclusive and shared, session and
/// transaction scope together (each re-entrant call counts once; 0 when not held). The
/// number of unlocks, plus the transaction ends, that release it completely.
#[pg_extern(volatile, parallel_restricted)]
fn named_lock_hold_count(name: Option<Text>) -> i32 {
    let key = key_of(name);
    let n = lockmgr::hold_count(key, Mode::Exclusive) + lockmgr::hold_count(key, Mode::Shared);
    n.min(i32::MAX as i64) as i32
}
