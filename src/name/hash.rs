//! Name → key derivation. This is the compatibility contract of the extension
//! (DESIGN.md §2): a key must equal what a client computes with
//! `int.from_bytes(hashlib.md5(name.encode()).digest()[:8], "big", signed=True)`, so the
//! hash runs over the name's UTF-8 form in every database, whatever its encoding
//! (`pg::text` converts). The SQL idiom `('x' || substr(md5(name), 1, 16))::bit(64)::bigint`
//! hashes the database encoding's bytes: equal in a UTF-8 database, or for ASCII names.

use md5::{Digest, Md5};

/// The md5 digest of a name. The key is its prefix; the bytes after the key serve the
/// registry as a check value, so two names with one key are told apart without storing
/// (or comparing) whole names, however long.
#[derive(Clone, Copy)]
pub struct NameHash([u8; 16]);

impl NameHash {
    pub fn of(name: &[u8]) -> Self {
        NameHash(Md5::digest(name).into())
    }

    /// First 8 bytes as a signed big-endian int64: `named_lock_key`.
    pub fn key64(&self) -> i64 {
        i64::from_be_bytes(self.0[..8].try_into().expect("16-byte digest"))
    }

    /// First 4 bytes as a signed big-endian int32: `named_lock_key32`.
    pub fn key32(&self) -> i32 {
        i32::from_be_bytes(self.0[..4].try_into().expect("16-byte digest"))
    }

    /// The 8 bytes after a 64-bit key.
    pub fn check64(&self) -> u64 {
        u64::from_be_bytes(self.0[8..].try_into().expect("16-byte digest"))
    }

    /// The 4 bytes after a 32-bit key.
    pub fn check32(&self) -> u32 {
        u32::from_be_bytes(self.0[4..8].try_into().expect("16-byte digest"))
    }
}

pub fn key64(name: &[u8]) -> i64 {
    NameHash::of(name).key64()
}

pub fn key32(name: &[u8]) -> i32 {
    NameHash::of(name).key32()
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn known_vectors() {
        // md5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(key64(b""), 0xd41d8cd98f00b204_u64 as i64);
        assert_eq!(key32(b""), 0xd41d8cd9_u32 as i32);
        // md5("a") = 0cc175b9c0f1b6a831c399e269772661
        assert_eq!(key64(b"a"), 0x0cc175b9c0f1b6a8_i64);
        assert_eq!(key32(b"a"), 0x0cc175b9_i32);
    }
}
