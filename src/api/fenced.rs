//! Fencing tokens (DESIGN.md §7): the fenced lock functions, which return the grant's
//! token, and the token functions any session can call.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::lock::{self, fence};
use crate::pg::lockmgr::Scope;
use crate::pg::text::Text;
use lock::wait::Wait;

/// The one-name fenced functions are declared by hand, as `api::named`'s are (see there):
/// pgrx's generic call convention would be most of what a fenced grant costs on top of
/// a plain one. Same SQL as `#[pg_extern]` generates (the catalog comparison of
/// scripts/package-tests.sh holds them to it); the token is an int8 by value, NULL when
/// the lock was not taken.
macro_rules! fenced_fn {
    ($sym:ident, $finfo:ident, $sql:literal, $scope:ident, $wait:ident) => {
        one_text_fn!($sym, $finfo, $sql, |fcinfo, name| match fence::acquire(name, Scope::$scope, Wait::$wait) {
            Some(token) => pg_sys::Datum::from(token),
            None => {
                // SAFETY: the call frame is ours to mark the result NULL in.
                unsafe { (*fcinfo).isnull = true };
                pg_sys::Datum::from(0)
            }
        });
    };
}

fenced_fn! { lock_named_fenced_wrapper,          pg_finfo_lock_named_fenced_wrapper,          "lock_named_fenced",          Session, Forever }
fenced_fn! { try_lock_named_fenced_wrapper,      pg_finfo_try_lock_named_fenced_wrapper,      "try_lock_named_fenced",      Session, No }
fenced_fn! { xact_lock_named_fenced_wrapper,     pg_finfo_xact_lock_named_fenced_wrapper,     "xact_lock_named_fenced",     Xact,    Forever }
fenced_fn! { try_xact_lock_named_fenced_wrapper, pg_finfo_try_xact_lock_named_fenced_wrapper, "try_xact_lock_named_fenced", Xact,    No }

extension_sql!(
    r#"
CREATE FUNCTION "lock_named_fenced"("name" TEXT) RETURNS bigint VOLATILE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'lock_named_fenced_wrapper';
CREATE FUNCTION "try_lock_named_fenced"("name" TEXT) RETURNS bigint VOLATILE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'try_lock_named_fenced_wrapper';
CREATE FUNCTION "xact_lock_named_fenced"("name" TEXT) RETURNS bigint VOLATILE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'xact_lock_named_fenced_wrapper';
CREATE FUNCTION "try_xact_lock_named_fenced"("name" TEXT) RETURNS bigint VOLATILE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'try_xact_lock_named_fenced_wrapper';
"#,
    name = "fenced_functions",
);

fn name<'a>(n: &Option<Text<'a>>) -> Option<&'a str> {
    n.map(|t| t.0)
}

#[pg_extern(volatile, parallel_restricted, name = "lock_named_fenced")]
pub fn lock_named_fenced_timeout(name: Option<Text>, timeout: Option<Interval>) -> Option<i64> {
    fence::acquire(self::name(&name), Scope::Session, lock::timeout(timeout))
}

#[pg_extern(volatile, parallel_restricted, name = "xact_lock_named_fenced")]
pub fn xact_lock_named_fenced_timeout(name: Option<Text>, timeout: Option<Interval>) -> Option<i64> {
    fence::acquire(self::name(&name), Scope::Xact, lock::timeout(timeout))
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
