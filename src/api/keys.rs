//! The SQL key functions: `named_lock_key` and `named_lock_key32`, the keys the lock
//! functions lock (the derivation itself is `name::hash`).

use pgrx::prelude::*;

use crate::name::hash::{key32, key64};
use crate::name::validate;
use crate::pg::text::Text;

/// The bigint key `lock_named(name)` locks. NULL raises 22004 rather than returning NULL:
/// `pg_advisory_lock(named_lock_key(NULL))` would otherwise silently lock nothing.
#[pg_extern(immutable, parallel_safe)]
fn named_lock_key(name: Option<Text>) -> i64 {
    key64(validate::require_hashable(name.map(Text::as_str), "name").as_bytes())
}

/// The 32-bit key a namespace or name takes in the two-key ("pair") space.
#[pg_extern(immutable, parallel_safe)]
fn named_lock_key32(name: Option<Text>) -> i32 {
    key32(validate::require_hashable(name.map(Text::as_str), "name").as_bytes())
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    /// Every kind of text the contract covers, checked against the SQL idiom in-server.
    #[pg_test]
    fn key_equals_sql_md5_idiom() {
        let cases = [
            "a",
            "",
            "daily-report-job",
            "with space",
            "it's \"quoted\"",
            "back\\slash",
            "Ünïcödé ✓ 日本語 🚀",
            "עברית RTL",
            "e\u{301} combining",
        ];
        for c in cases {
            let ok = Spi::get_one_with_args::<bool>(
                "SELECT named_lock_key($1) = ('x' || substr(md5($1), 1, 16))::bit(64)::bigint \
                 AND named_lock_key32($1) = ('x' || substr(md5($1), 1, 8))::bit(32)::int",
                &[c.into()],
            )
            .unwrap()
            .unwrap();
            assert!(ok, "key mismatch for {c:?}");
        }
        let long_ok = Spi::get_one::<bool>(
            "SELECT bool_and(named_lock_key(s) = ('x' || substr(md5(s), 1, 16))::bit(64)::bigint) \
             FROM (SELECT repeat('ü-long-name ', n) AS s FROM generate_series(1, 20000, 997) n) t",
        )
        .unwrap()
        .unwrap();
        assert!(long_ok);
    }

    #[pg_test]
    fn key_known_value() {
        // Python: int.from_bytes(hashlib.md5(b"a").digest()[:8], "big", signed=True)
        assert_eq!(Spi::get_one::<i64>("SELECT named_lock_key('a')").unwrap(), Some(0x0cc175b9c0f1b6a8));
        // md5('account') starts with 0xe268443e: negative as a signed int32.
        assert_eq!(Spi::get_one::<i32>("SELECT named_lock_key32('account')").unwrap(), Some(0xe268443e_u32 as i32));
    }

    #[pg_test(error = "lock name must not be NULL")]
    fn key_of_null_is_an_error() {
        Spi::run("SELECT named_lock_key(NULL)").unwrap();
    }

    #[pg_test]
    fn key_functions_are_immutable_parallel_safe() {
        let n = Spi::get_one::<i64>(
            "SELECT count(*) FROM pg_proc WHERE proname IN ('named_lock_key','named_lock_key32') \
             AND provolatile = 'i' AND proparallel = 's'",
        )
        .unwrap();
        assert_eq!(n, Some(2));
    }
}
