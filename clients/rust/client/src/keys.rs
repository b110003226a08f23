//! Name → key, computed locally. The extension's compatibility contract: a key is a prefix
//! of the md5 of the name's UTF-8 form, read as a signed big-endian integer, in every
//! database whatever its encoding.

use md5::{Digest, Md5};

fn digest(name: &str) -> [u8; 16] {
    Md5::digest(name.as_bytes()).into()
}

/// `named_lock_key(name)`: the bigint key of `lock_named(name)`, so
/// `pg_advisory_lock(key(name))` takes the same lock.
///
/// ```
/// assert_eq!(pg_named_locks::key("a"), 0x0cc175b9c0f1b6a8);
/// assert_eq!(pg_named_locks::key(""), 0xd41d8cd98f00b204_u64 as i64);
/// ```
pub fn key(name: &str) -> i64 {
    let d = digest(name);
    i64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// `named_lock_key32(name)`: the first 4 bytes of the md5 as a signed int32.
///
/// ```
/// assert_eq!(pg_named_locks::key32("a"), 0x0cc175b9);
/// ```
pub fn key32(name: &str) -> i32 {
    let d = digest(name);
    i32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// The two keys of `lock_pair(namespace, name)`: `pg_advisory_lock(k1, k2)` takes the same
/// lock.
///
/// ```
/// let (k1, k2) = pg_named_locks::pair_key("account", "a");
/// assert_eq!(k2, pg_named_locks::key32("a"));
/// ```
pub fn pair_key(namespace: &str, name: &str) -> (i32, i32) {
    (key32(namespace), key32(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // md5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(key(""), 0xd41d8cd98f00b204_u64 as i64);
        assert_eq!(key32(""), 0xd41d8cd9_u32 as i32);
        // md5("a") = 0cc175b9c0f1b6a831c399e269772661
        assert_eq!(key("a"), 0x0cc175b9c0f1b6a8);
        // from Python: int.from_bytes(hashlib.md5(name.encode()).digest()[:8], "big", signed=True)
        assert_eq!(key("daily-report-job"), 2900925584919938136);
        assert_eq!(key32("daily-report-job"), 675424371);
        assert_eq!(key("日本語"), 4797137895898867); // the UTF-8 bytes
        assert_eq!(key32("日本語"), 1116920);
        assert_eq!(pair_key("ns", "x"), (key32("ns"), key32("x")));
    }
}
