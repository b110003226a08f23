//! The SQL-facing lock functions (DESIGN.md §3). Each one resolves its arguments to a
//! [`Target`](crate::lock::Target) and makes exactly one call into [`lock`](crate::lock); no SPI,
//! no query.
//!
//! All are VOLATILE and PARALLEL RESTRICTED, like `pg_advisory_lock`. None is STRICT:
//! a NULL argument must raise an error, never return NULL without locking.

/// A function of one `text` argument declared by hand (the hot path; see `api::named`):
/// its V1 info record and a guarded wrapper that reads the argument in place (`$name`,
/// None for NULL) and returns `$body`'s Datum; `$fcinfo` names the call frame for
/// bodies that set a NULL result. The SQL declaration is the caller's `extension_sql!`.
macro_rules! one_text_fn {
    ($sym:ident, $finfo:ident, $sql:literal, |$fcinfo:ident, $name:ident| $body:expr) => {
        #[no_mangle]
        #[doc(hidden)]
        pub extern "C" fn $finfo() -> &'static pg_sys::Pg_finfo_record {
            static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }

        #[no_mangle]
        #[doc = concat!("SQL `", $sql, "(text)`")]
        ///
        /// # Safety
        /// For PostgreSQL to call, through the SQL declaration of its module: `fcinfo`
        /// must be the call frame of a call with one `text` argument.
        #[pg_guard]
        pub unsafe extern "C-unwind" fn $sym(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
            // SAFETY: PostgreSQL calls this through its SQL declaration: one text
            // argument in a valid call frame.
            let $name = unsafe { crate::api::named::text_arg(fcinfo) };
            // (the caller's name for the frame: macro hygiene keeps this one's apart)
            #[allow(unused_variables)]
            let $fcinfo = fcinfo;
            $body
        }
    };
}

/// One SQL function. `lock` waits (void), `try` never waits (boolean), `unlock` releases
/// one session hold (boolean). The argument list is forwarded as raw tokens, not as `ty`
/// fragments: pgrx infers STRICT from the literal `Option<…>` in the signature, and an
/// opaque `ty` would hide it (making NULL silently return NULL without locking).
macro_rules! sql_fn {
    (lock, $rust:ident, $sql:literal, $mode:ident, $scope:ident, $args:tt => $key:expr) => {
        #[pg_extern(volatile, parallel_restricted, name = $sql)]
        pub fn $rust $args {
            lock::acquire(&[$key], Mode::$mode, Scope::$scope, Wait::Forever);
        }
    };
    (try, $rust:ident, $sql:literal, $mode:ident, $scope:ident, $args:tt => $key:expr) => {
        #[pg_extern(volatile, parallel_restricted, name = $sql)]
        pub fn $rust $args -> bool {
            lock::acquire(&[$key], Mode::$mode, Scope::$scope, Wait::No)
        }
    };
    (timed, $rust:ident, $sql:literal, $mode:ident, $scope:ident, $args:tt => $key:expr) => {
        #[pg_extern(volatile, parallel_restricted, name = $sql)]
        pub fn $rust $args -> bool {
            let (target, timeout) = $key;
            lock::acquire(&[target], Mode::$mode, Scope::$scope, lock::timeout(timeout))
        }
    };
    (unlock, $rust:ident, $sql:literal, $mode:ident, $args:tt => $key:expr) => {
        #[pg_extern(volatile, parallel_restricted, name = $sql)]
        pub fn $rust $args -> bool {
            lock::release(&[$key], Mode::$mode) == 1
        }
    };
}

/// The ten functions of one key space (session/xact × exclusive/shared × wait/try, plus
/// the two unlocks). Rust names must be unique, SQL names may be overloaded.
macro_rules! family {
    ($args:tt => $key:expr; $(
        $kind:ident $rust:ident $sql:literal $mode:ident $($scope:ident)?;
    )*) => {
        $( sql_fn!($kind, $rust, $sql, $mode, $($scope,)? $args => $key); )*
    };
}

pub mod fenced;
pub mod keys;
pub mod lease;
pub mod many;
pub mod named;
pub mod pair;

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    /// Holds (granted rows × 1) this backend has on the advisory tag the built-ins would use.
    fn holds(tag_sql: &str, mode: &str) -> i64 {
        Spi::get_one::<i64>(&format!(
            "SELECT count(*) FROM pg_locks l, ({tag_sql}) t(classid, objid, objsubid) \
             WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.granted \
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND l.classid = t.classid AND l.objid = t.objid AND l.objsubid = t.objsubid \
               AND l.mode = '{mode}'"
        ))
        .unwrap()
        .unwrap()
    }

    /// The (classid, objid, objsubid) the built-in pg_advisory_lock(bigint) uses for a name.
    fn named_tag(name: &str) -> String {
        format!(
            "SELECT ((k >> 32) & 4294967295)::oid, (k & 4294967295)::oid, 1::int2 \
             FROM (SELECT named_lock_key('{name}') k) s"
        )
    }

    /// The tag of pg_advisory_lock(int4, int4).
    fn pair_tag(k1: &str, k2: &str) -> String {
        format!("SELECT (({k1})::bigint & 4294967295)::oid, (({k2})::bigint & 4294967295)::oid, 2::int2")
    }

    fn sql_bool(q: &str) -> bool {
        Spi::get_one::<bool>(q).unwrap().unwrap()
    }

    #[pg_test]
    fn session_named_functions_count_like_builtins() {
        let t = named_tag("unit-session");
        Spi::run("SELECT lock_named('unit-session')").unwrap();
        assert_eq!(holds(&t, "ExclusiveLock"), 1);
        assert!(sql_bool("SELECT try_lock_named('unit-session')"), "re-entrant try");
        assert!(sql_bool("SELECT unlock_named('unit-session')"));
        assert!(sql_bool("SELECT unlock_named('unit-session')"));
        assert_eq!(holds(&t, "ExclusiveLock"), 0);
        assert!(!sql_bool("SELECT unlock_named('unit-session')"), "unlock of a lock not held");

        Spi::run("SELECT lock_named_shared('unit-session')").unwrap();
        assert!(sql_bool("SELECT try_lock_named_shared('unit-session')"));
        assert_eq!(holds(&t, "ShareLock"), 1);
        assert!(!sql_bool("SELECT unlock_named('unit-session')"), "exclusive unlock of a shared hold");
        assert!(sql_bool("SELECT unlock_named_shared('unit-session')"));
        assert!(sql_bool("SELECT unlock_named_shared('unit-session')"));
        assert!(!sql_bool("SELECT unlock_named_shared('unit-session')"));
        assert_eq!(holds(&t, "ShareLock"), 0);
    }

    #[pg_test]
    fn xact_named_functions_take_transaction_locks() {
        let t = named_tag("unit-xact");
        Spi::run("SELECT xact_lock_named('unit-xact')").unwrap();
        assert!(sql_bool("SELECT try_xact_lock_named('unit-xact')"));
        assert_eq!(holds(&t, "ExclusiveLock"), 1);
        Spi::run("SELECT xact_lock_named_shared('unit-xact')").unwrap();
        assert!(sql_bool("SELECT try_xact_lock_named_shared('unit-xact')"));
        assert_eq!(holds(&t, "ShareLock"), 1);
        // a transaction lock is not a session lock: unlock does not touch it
        assert!(!sql_bool("SELECT unlock_named('unit-xact')"));
        assert_eq!(holds(&t, "ExclusiveLock"), 1);
    }

    #[pg_test]
    fn pair_functions_use_the_two_key_space() {
        let by_name = pair_tag("named_lock_key32('unit-ns')", "named_lock_key32('unit-item')");
        let by_id = pair_tag("named_lock_key32('unit-ns')", "-42");
        Spi::run("SELECT lock_pair('unit-ns', 'unit-item')").unwrap();
        Spi::run("SELECT lock_pair('unit-ns', -42)").unwrap();
        assert!(sql_bool("SELECT try_lock_pair('unit-ns', 'unit-item')"));
        assert!(sql_bool("SELECT try_lock_pair('unit-ns', -42)"));
        assert_eq!(holds(&by_name, "ExclusiveLock"), 1);
        assert_eq!(holds(&by_id, "ExclusiveLock"), 1);
        for _ in 0..2 {
            assert!(sql_bool("SELECT unlock_pair('unit-ns', 'unit-item')"));
            assert!(sql_bool("SELECT unlock_pair('unit-ns', -42)"));
        }
        assert!(!sql_bool("SELECT unlock_pair('unit-ns', -42)"));

        Spi::run("SELECT lock_pair_shared('unit-ns', 'unit-item')").unwrap();
        Spi::run("SELECT lock_pair_shared('unit-ns', -42)").unwrap();
        assert!(sql_bool("SELECT try_lock_pair_shared('unit-ns', 'unit-item')"));
        assert!(sql_bool("SELECT try_lock_pair_shared('unit-ns', -42)"));
        assert_eq!(holds(&by_name, "ShareLock"), 1);
        assert_eq!(holds(&by_id, "ShareLock"), 1);
        for _ in 0..2 {
            assert!(sql_bool("SELECT unlock_pair_shared('unit-ns', 'unit-item')"));
            assert!(sql_bool("SELECT unlock_pair_shared('unit-ns', -42)"));
        }
        assert_eq!(holds(&by_id, "ShareLock") + holds(&by_name, "ShareLock"), 0);

        Spi::run("SELECT xact_lock_pair('unit-ns', 'unit-item'), xact_lock_pair('unit-ns', -42)").unwrap();
        assert!(sql_bool("SELECT try_xact_lock_pair('unit-ns', 'unit-item') AND try_xact_lock_pair('unit-ns', -42)"));
        Spi::run("SELECT xact_lock_pair_shared('unit-ns', 'unit-item'), xact_lock_pair_shared('unit-ns', -42)").unwrap();
        assert!(sql_bool(
            "SELECT try_xact_lock_pair_shared('unit-ns', 'unit-item') AND try_xact_lock_pair_shared('unit-ns', -42)"
        ));
        assert_eq!(holds(&by_name, "ExclusiveLock") + holds(&by_id, "ExclusiveLock"), 2);
        assert_eq!(holds(&by_name, "ShareLock") + holds(&by_id, "ShareLock"), 2);
        // ids at the integer limits are valid keys
        assert!(sql_bool("SELECT try_xact_lock_pair('unit-ns', 2147483647) AND try_xact_lock_pair('unit-ns', -2147483648)"));
    }

    #[pg_test(error = "lock name must not be NULL")]
    fn null_name_is_an_error() {
        Spi::run("SELECT try_lock_named(NULL)").unwrap();
    }

    #[pg_test(error = "lock name must not be empty")]
    fn empty_name_is_an_error() {
        Spi::run("SELECT xact_lock_named_shared('')").unwrap();
    }

    #[pg_test(error = "lock namespace must not be NULL")]
    fn null_namespace_is_an_error() {
        Spi::run("SELECT lock_pair(NULL, 1)").unwrap();
    }

    #[pg_test(error = "lock namespace must not be empty")]
    fn empty_namespace_is_an_error() {
        Spi::run("SELECT try_lock_pair_shared('', 'x')").unwrap();
    }

    #[pg_test(error = "lock name must not be NULL")]
    fn null_pair_name_is_an_error() {
        Spi::run("SELECT unlock_pair('ns', NULL::text)").unwrap();
    }

    #[pg_test(error = "lock id must not be NULL")]
    fn null_pair_id_is_an_error() {
        Spi::run("SELECT xact_lock_pair('ns', NULL::int)").unwrap();
    }

    #[pg_test]
    fn errors_carry_sqlstates_and_take_no_lock() {
        Spi::run(
            "DO $$ DECLARE s text := ''; c text; BEGIN
               BEGIN PERFORM lock_named(NULL); EXCEPTION WHEN OTHERS THEN GET STACKED DIAGNOSTICS c = RETURNED_SQLSTATE; s := s || c; END;
               BEGIN PERFORM lock_named(''); EXCEPTION WHEN OTHERS THEN GET STACKED DIAGNOSTICS c = RETURNED_SQLSTATE; s := s || ',' || c; END;
               BEGIN PERFORM lock_pair('ns', NULL::int); EXCEPTION WHEN OTHERS THEN GET STACKED DIAGNOSTICS c = RETURNED_SQLSTATE; s := s || ',' || c; END;
               PERFORM set_config('unit.codes', s, true);
             END $$",
        )
        .unwrap();
        let codes = Spi::get_one::<String>("SELECT current_setting('unit.codes')").unwrap();
        assert_eq!(codes.as_deref(), Some("22004,22023,22004"));
        let n =
            Spi::get_one::<i64>("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()").unwrap();
        assert_eq!(n, Some(0));
    }

    #[pg_test]
    fn lock_functions_are_volatile_parallel_restricted_not_strict() {
        let bad = Spi::get_one::<i64>(
            "SELECT count(*) FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass \
             JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_named_locks' \
             WHERE p.proname ~ '^(try_)?(xact_)?(un)?lock_(named|pair|many)' \
               AND (p.provolatile <> 'v' OR p.proparallel <> 'r' OR p.proisstrict OR p.prosecdef)",
        )
        .unwrap();
        assert_eq!(bad, Some(0));
        let n = Spi::get_one::<i64>(
            "SELECT count(*) FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass \
             JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_named_locks' \
             WHERE p.proname ~ '^(try_)?(xact_)?(un)?lock_(named|pair|many)'",
        )
        .unwrap();
        assert_eq!(n, Some(57)); // 30 plain, 12 timeout overloads, 7 _many, 6 fenced, 2 leased
    }
}
