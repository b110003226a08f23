//! Fencing tokens (DESIGN.md §7): the fenced lock functions, which return the grant's
//! token, and the token functions any session can call.

use pgrx::prelude::*;

use crate::lock::{self, fence};
use crate::pg::lockmgr::Scope;
use crate::pg::text::Text;
use lock::wait::Wait;

fn name<'a>(n: &Option<Text<'a>>) -> Option<&'a str> {
    n.map(|t| t.0)
}

/// Waits like `lock_named`; returns the grant's fencing token.
#[pg_extern(volatile, parallel_restricted)]
pub fn lock_named_fenced(name: Option<Text>) -> Option<i64> {
    fence::acquire(self::name(&name), Scope::Session, Wait::Forever)
}

/// The token, or NULL when the timeout passed (nothing is held then).
#[pg_extern(volatile, parallel_restricted, name = "lock_named_fenced")]
pub fn lock_named_fenced_timeout(name: Option<Text>, timeout: Option<Interval>) -> Option<i64> {
    fence::acquire(self::name(&name), Scope::Session, lock::timeout(timeout))
}

/// The token, or NULL when the lock is busy.
#[pg_extern(volatile, parallel_restricted)]
pub fn try_lock_named_fenced(name: Option<Text>) -> Option<i64> {
    fence::acquire(self::name(&name), Scope::Session, Wait::No)
}

#[pg_extern(volatile, parallel_restricted)]
pub fn xact_lock_named_fenced(name: Option<Text>) -> Option<i64> {
    fence::acquire(self::name(&name), Scope::Xact, Wait::Forever)
}

#[pg_extern(volatile, parallel_restricted, name = "xact_lock_named_fenced")]
pub fn xact_lock_named_fenced_timeout(name: Option<Text>, timeout: Option<Interval>) -> Option<i64> {
    fence::acquire(self::name(&name), Scope::Xact, lock::timeout(timeout))
}

#[pg_extern(volatile, parallel_restricted)]
pub fn try_xact_lock_named_fenced(name: Option<Text>) -> Option<i64> {
    fence::acquire(self::name(&name), Scope::Xact, Wait::No)
}

/// The token of this session's current hold of `name`; NULL when it holds none with a token.
#[pg_extern(volatile, parallel_restricted)]
pub fn named_lock_token(name: Option<Text>) -> Option<i64> {
    fence::token(self::name(&name))
}

/// Whether `name` is held right now, by any session or prepared transaction, under the
/// grant that produced `token`.
#[pg_extern(volatile, parallel_restricted)]
pub fn named_lock_check(name: Option<Text>, token: Option<i64>) -> bool {
    fence::check(self::name(&name), token)
}

/// Raises 55P03 (lock_not_available) when `named_lock_check` would be false.
#[pg_extern(volatile, parallel_restricted)]
pub fn named_lock_assert(name: Option<Text>, token: Option<i64>) {
    fence::assert(self::name(&name), token)
}
