//! The one-name functions: `lock_named(name)` and its nine siblings, declared by hand
//! for speed (see `named_fn!`), and their per-call timeout overloads.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::lock::wait::Wait;
use crate::lock::{self, Target};
use crate::pg::lockmgr::{Mode, Scope};
use crate::pg::text::Text;

/// The ten one-name functions are the hot path: a lock+unlock pair costs a few hundred
/// nanoseconds, and pgrx's generic call convention (an argument iterator, return boxing)
/// is a sizeable share of that. So they are declared by hand: the same symbols and the
/// same SQL that `#[pg_extern]` generated for 0.1.0 (scripts/package-tests.sh compares
/// the catalog with the released install script), the same guard (`#[pg_guard]` turns a
/// Rust panic into an ERROR), an argument read straight from the call frame.
macro_rules! named_fn {
    ($kind:ident, $sym:ident, $finfo:ident, $sql:literal, $mode:ident $(, $scope:ident)?) => {
        one_text_fn!($sym, $finfo, $sql, |fcinfo, name| named_fn!(@body $kind, name, $mode $(, $scope)?));
    };
    (@body lock, $name:ident, $mode:ident, $scope:ident) => {{
        lock::acquire(&[Target::named($name)], Mode::$mode, Scope::$scope, Wait::Forever);
        pg_sys::Datum::from(0) // void
    }};
    (@body try, $name:ident, $mode:ident, $scope:ident) => {
        pg_sys::Datum::from(lock::acquire(&[Target::named($name)], Mode::$mode, Scope::$scope, Wait::No))
    };
    (@body unlock, $name:ident, $mode:ident) => {
        pg_sys::Datum::from(lock::release_named($name, Mode::$mode))
    };
}

/// The one `text` argument of a `named_fn!` function (None for NULL).
///
/// # Safety
/// `fcinfo` must be the call frame of a function declared with one `text` argument.
pub(super) unsafe fn text_arg<'a>(fcinfo: pg_sys::FunctionCallInfo) -> Option<&'a str> {
    // SAFETY: per the contract, args holds nargs = 1 initialised entries.
    let arg = unsafe { (*fcinfo).args.as_slice(1)[0] };
    // SAFETY: a text datum (or NULL), as Text expects.
    unsafe { <Text as pgrx::FromDatum>::from_datum(arg.value, arg.isnull) }.map(Text::as_str)
}

// Brace-delimited so that rustfmt leaves the columns alone (it reformats `named_fn!(…);`).
named_fn! { lock,   lock_named_wrapper,                 pg_finfo_lock_named_wrapper,                 "lock_named",                 Exclusive, Session }
named_fn! { lock,   lock_named_shared_wrapper,          pg_finfo_lock_named_shared_wrapper,          "lock_named_shared",          Shared,    Session }
named_fn! { try,    try_lock_named_wrapper,             pg_finfo_try_lock_named_wrapper,             "try_lock_named",             Exclusive, Session }
named_fn! { try,    try_lock_named_shared_wrapper,      pg_finfo_try_lock_named_shared_wrapper,      "try_lock_named_shared",      Shared,    Session }
named_fn! { unlock, unlock_named_wrapper,               pg_finfo_unlock_named_wrapper,               "unlock_named",               Exclusive }
named_fn! { unlock, unlock_named_shared_wrapper,        pg_finfo_unlock_named_shared_wrapper,        "unlock_named_shared",        Shared }
named_fn! { lock,   xact_lock_named_wrapper,            pg_finfo_xact_lock_named_wrapper,            "xact_lock_named",            Exclusive, Xact }
named_fn! { lock,   xact_lock_named_shared_wrapper,     pg_finfo_xact_lock_named_shared_wrapper,     "xact_lock_named_shared",     Shared,    Xact }
named_fn! { try,    try_xact_lock_named_wrapper,        pg_finfo_try_xact_lock_named_wrapper,        "try_xact_lock_named",        Exclusive, Xact }
named_fn! { try,    try_xact_lock_named_shared_wrapper, pg_finfo_try_xact_lock_named_shared_wrapper, "try_xact_lock_named_shared", Shared,    Xact }

// What #[pg_extern] generated for these in 0.1.0: not STRICT (NULL must raise, see above).
extension_sql!(
    r#"
CREATE FUNCTION "lock_named"("name" TEXT) RETURNS void VOLATILE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'lock_named_wrapper';
CREATE FUNCTION "lock_named_shared"("name" TEXT) RETURNS void VOLATILE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'lock_named_shared_wrapper';
CREATE FUNCTION "try_lock_named"("name" TEXT) RETURNS bool VOLATILE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'try_lock_named_wrapper';
CREATE FUNCTION "try_lock_named_shared"("name" TEXT) RETURNS bool VOLATILE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'try_lock_named_shared_wrapper';
CREATE FUNCTION "unlock_named"("name" TEXT) RETURNS bool VOLATILE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'unlock_named_wrapper';
CREATE FUNCTION "unlock_named_shared"("name" TEXT) RETURNS bool VOLATILE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'unlock_named_shared_wrapper';
CREATE FUNCTION "xact_lock_named"("name" TEXT) RETURNS void VOLATILE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'xact_lock_named_wrapper';
CREATE FUNCTION "xact_lock_named_shared"("name" TEXT) RETURNS void VOLATILE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'xact_lock_named_shared_wrapper';
CREATE FUNCTION "try_xact_lock_named"("name" TEXT) RETURNS bool VOLATILE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'try_xact_lock_named_wrapper';
CREATE FUNCTION "try_xact_lock_named_shared"("name" TEXT) RETURNS bool VOLATILE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'try_xact_lock_named_shared_wrapper';
"#,
    name = "named_functions",
);

// Per-call timeouts: true when locked, false when the timeout passed first (never
// leaving the lock held), 0 = try. The caller's lock_timeout is not changed.
family! { (name: Option<Text>, timeout: Option<Interval>) => (Target::named(name.map(Text::as_str)), timeout);
    timed  lock_named_timeout               "lock_named"             Exclusive Session;
    timed  lock_named_shared_timeout        "lock_named_shared"      Shared    Session;
    timed  xact_lock_named_timeout          "xact_lock_named"        Exclusive Xact;
    timed  xact_lock_named_shared_timeout   "xact_lock_named_shared" Shared    Xact;
}
