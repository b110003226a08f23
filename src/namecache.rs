//! Backend-local memo of name → md5 digest, so a name this backend has locked before
//! costs a hash-table probe instead of an md5. Bounded: cleared when it grows past
//! `CAPACITY` names (a workload with more distinct names pays md5, as without it).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::backend::BackendLocal;
use crate::keys::NameHash;

const CAPACITY: usize = 16_384;

/// FxHash (as in rustc): a few cycles per 8 bytes. Names are caller-chosen, but the
/// table is per backend and bounded, so a crafted collision set only slows its sender.
#[derive(Default)]
pub struct Fx(u64);

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64)
    }
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64)
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i)
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64)
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl Fx {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

pub type FxBuild = BuildHasherDefault<Fx>;

/// What a backend remembers about a name: its digest and, once registered, the
/// registry slot and the registry generation the slot is valid for.
#[derive(Clone, Copy)]
pub struct Memo {
    pub hash: NameHash,
    pub slot: Option<(i32, u64)>,
}

static MEMO: BackendLocal<Option<HashMap<Box<str>, Memo, FxBuild>>> = BackendLocal::new(None);

/// The name looked up last, inline: `unlock_named(x)` right after `lock_named(x)` (the
/// usual pattern) is then a short memcmp, not a hash-table probe.
const LAST_BYTES: usize = 64;
static LAST: BackendLocal<(usize, [u8; LAST_BYTES], Option<Memo>)> = BackendLocal::new((0, [0; LAST_BYTES], None));

/// md5 of `name` (memoised), and the registry slot last seen for it.
pub fn lookup(name: &str) -> Memo {
    let b = name.as_bytes();
    if let Some(m) = LAST.with(|(len, bytes, memo)| (*len == b.len() && &bytes[..*len] == b).then_some(*memo).flatten()) {
        return m;
    }
    let memo = lookup_table(name);
    remember_last(b, memo);
    memo
}

fn remember_last(b: &[u8], memo: Memo) {
    LAST.with(|(len, bytes, m)| {
        if b.len() <= LAST_BYTES {
            *len = b.len();
            bytes[..b.len()].copy_from_slice(b);
            *m = Some(memo);
        } else {
            *m = None;
        }
    });
}

fn lookup_table(name: &str) -> Memo {
    if let Some(m) = MEMO.with(|m| m.as_ref().and_then(|m| m.get(name).copied())) {
        return m;
    }
    let memo = Memo { hash: NameHash::of(name.as_bytes()), slot: None };
    MEMO.with(|m| {
        let m = m.get_or_insert_with(HashMap::default);
        if m.len() >= CAPACITY {
            m.clear();
        }
        m.insert(name.into(), memo);
    });
    memo
}

pub fn hash(name: &str) -> NameHash {
    lookup(name).hash
}

/// Remember the registry slot of `name` (valid while the generation is `generation`).
pub fn set_slot(name: &str, slot: i32, generation: u64) {
    let memo = MEMO.with(|m| {
        let e = m.as_mut().and_then(|m| m.get_mut(name))?;
        e.slot = Some((slot, generation));
        Some(*e)
    });
    if let Some(memo) = memo {
        remember_last(name.as_bytes(), memo);
    }
}

#[cfg(test)]
mod unit {
    #[test]
    fn memo_returns_the_md5() {
        for n in ["a", "daily-report-job", "ü", ""] {
            assert_eq!(super::hash(n).key64(), crate::keys::key64(n.as_bytes()));
            assert_eq!(super::hash(n).check64(), crate::keys::NameHash::of(n.as_bytes()).check64());
        }
    }
}
