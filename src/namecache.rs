//! Backend-local memo of name → md5 digest, so a name this backend has locked before
//! costs a hash-table probe instead of an md5. Bounded: cleared when it grows past
//! `CAPACITY` names (a workload with more distinct names pays md5, as without it).
//! A name enters the memo the second time it is seen, not the first: a stream of names
//! used once each (job ids, request ids) would otherwise pay an allocation and an insert
//! per name and keep flushing the names that do repeat.

use std::hash::{BuildHasherDefault, Hasher};

use crate::backend::BackendLocal;
use crate::flatmap::{same_bytes, FlatMap};
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
    /// the name's memo fingerprint, for `set_slot`
    pub fp: u64,
}

static MEMO: BackendLocal<FlatMap<Box<[u8]>, Memo>> = BackendLocal::new(FlatMap::new());

/// A 64-bit hash of a name for the memo: Fx rounds over whole 8-byte words, the last one
/// overlapping, and the length (so no tail is copied into a buffer).
#[inline]
fn fingerprint(b: &[u8]) -> u64 {
    let n = b.len();
    let w8 = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let w4 = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes")) as u64;
    let mut h = Fx(n as u64);
    if n >= 8 {
        let mut i = 0;
        while i + 8 < n {
            h.add(w8(i));
            i += 8;
        }
        h.add(w8(n - 8));
    } else if n >= 4 {
        h.add((w4(0) << 32) | w4(n - 4));
    } else if n > 0 {
        h.add(b[0] as u64 | (b[n / 2] as u64) << 8 | (b[n - 1] as u64) << 16);
    }
    h.finish()
}

/// The last name looked up that is not in the memo, inline: `unlock_named(x)` right
/// after `lock_named(x)` of a name used once then costs a short compare, not a second md5
/// (nor does it count as a second sighting).
const LAST_BYTES: usize = 64;
static LAST: BackendLocal<(u64, usize, [u8; LAST_BYTES], Option<Memo>)> =
    BackendLocal::new((0, 0, [0; LAST_BYTES], None));

/// md5 of `name` (memoised), and the registry slot last seen for it.
#[inline]
pub fn lookup(name: &str) -> Memo {
    let b = name.as_bytes();
    let f = fingerprint(b);
    if let Some(m) = MEMO.with(|m| m.get(f, |k| same_bytes(k, b)).copied()) {
        return m;
    }
    let last = LAST.with(|(lf, len, bytes, memo)| (*lf == f && same_bytes(&bytes[..*len], b)).then_some(*memo).flatten());
    if let Some(m) = last {
        return m;
    }
    compute(b, f)
}

/// A name in neither the memo nor LAST: its md5, remembered in one of them.
#[inline(never)]
fn compute(b: &[u8], f: u64) -> Memo {
    // The md5 is a long chain of arithmetic: the line `seen_before` reads after it,
    // likely not in cache under a stream of new names, loads meanwhile.
    SEEN.with(|seen| crate::registry::prefetch(seen[seen_index(f)..].as_ptr().cast()));
    let memo = Memo { hash: NameHash::of(b), slot: None, fp: f };
    if seen_before(f) {
        MEMO.with(|m| {
            if m.len() >= CAPACITY {
                m.clear();
            }
            m.insert_new(f, b.into(), memo);
        });
    } else {
        LAST.with(|(lf, len, bytes, m)| {
            if b.len() <= LAST_BYTES {
                (*lf, *len) = (f, b.len());
                bytes[..b.len()].copy_from_slice(b);
                *m = Some(memo);
            } else {
                *m = None;
            }
        });
    }
    memo
}

/// Fingerprints of names seen once and not memoised yet: a two-way set-associative table
/// as large as the memo, so a working set that fits the memo also fits here (a name
/// pushed out early is only memoised one use later).
const SEEN_SLOTS: usize = CAPACITY;
static SEEN: BackendLocal<[u64; SEEN_SLOTS]> = BackendLocal::new([0; SEEN_SLOTS]);

/// The first way of the set of fingerprint `f` (the two ways of a set share a cache line).
#[inline]
fn seen_index(f: u64) -> usize {
    ((f | 1) >> 40) as usize % SEEN_SLOTS & !1
}

/// Whether the name with fingerprint `f` was seen before (and forget it then); otherwise
/// note it.
fn seen_before(f: u64) -> bool {
    let f = f | 1; // never 0, the empty slot
    SEEN.with(|seen| {
        let i = seen_index(f);
        let set = &mut seen[i..i + 2];
        if let Some(slot) = set.iter_mut().find(|s| **s == f) {
            *slot = 0;
            return true;
        }
        // an empty way, else the second way (the first keeps the older name)
        let way = if set[0] == 0 { 0 } else { 1 };
        set[way] = f;
        false
    })
}

pub fn hash(name: &str) -> NameHash {
    lookup(name).hash
}

/// Remember the registry slot of `name` (valid while the generation is `generation`),
/// in LAST or in the memo, wherever the name is. `fp`: the `fp` its `lookup` returned.
pub fn set_slot(name: &str, fp: u64, slot: i32, generation: u64) {
    let b = name.as_bytes();
    // LAST first: a name gets its first slot right after its first lookup, which left it there.
    let in_last = LAST.with(|(lf, len, bytes, memo)| match memo.as_mut() {
        Some(m) if *lf == fp && same_bytes(&bytes[..*len], b) => {
            m.slot = Some((slot, generation));
            true
        }
        _ => false,
    });
    if !in_last {
        MEMO.with(|m| {
            if let Some(e) = m.get_mut(fp, |k| same_bytes(k, b)) {
                e.slot = Some((slot, generation));
            }
        });
    }
}

#[cfg(test)]
mod unit {
    #[test]
    fn memo_returns_the_md5() {
        // three rounds: first sight, memoised at the second, served from the memo at the third
        for _ in 0..3 {
            for n in ["a", "daily-report-job", "ü", "", "a-name-longer-than-the-sixty-four-bytes-kept-inline-for-the-last-lookup"] {
                assert_eq!(super::hash(n).key64(), crate::keys::key64(n.as_bytes()));
                assert_eq!(super::hash(n).check64(), crate::keys::NameHash::of(n.as_bytes()).check64());
            }
        }
    }

    #[test]
    fn a_name_is_memoised_the_second_time_it_is_seen() {
        let n = "memo-second-sight";
        let b = n.as_bytes();
        let in_memo = || super::MEMO.with(|m| m.get(super::fingerprint(b), |k| &k[..] == b).is_some());
        super::lookup(n);
        assert!(!in_memo());
        // straight again (unlock after lock): served by LAST, not a second sighting
        super::lookup(n);
        assert!(!in_memo());
        super::lookup("memo-something-else");
        super::lookup(n);
        assert!(in_memo());
    }
}
