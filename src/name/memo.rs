//! Backend-local memo of name → md5 digest, so a name this backend has locked before
//! costs a hash-table probe instead of an md5. Bounded: cleared when it grows past
//! `CAPACITY` names (a workload with more distinct names pays md5, as without it).
//! A name enters the memo the second time it is seen, not the first: a stream of names
//! used once each (job ids, request ids) would otherwise pay an allocation and an insert
//! per name and keep flushing the names that do repeat.

use std::hash::Hasher;

use crate::flatmap::{same_bytes, FlatMap};
use crate::name::hash::NameHash;
use crate::pg::backend::BackendLocal;
use rustc_hash::FxHasher;

const CAPACITY: usize = 16_384;
/// The longest name the memo keeps (see `NameMemo::compute`).
const MEMO_MAX_BYTES: usize = 1024;

/// What a backend remembers about a name: its digest and, once registered, the
/// registry slot and the registry generation the slot is valid for.
#[derive(Clone, Copy)]
pub struct Memo {
    pub hash: NameHash,
    pub slot: Option<(i32, u64)>,
    /// the name's memo fingerprint, for `set_slot`
    pub fp: u64,
}

/// A 64-bit hash of a name for the memo: FxHash rounds (rustc-hash) over whole 8-byte
/// words, the last one overlapping, seeded with the length (so no tail is copied into a
/// buffer; `FxHasher::write` would compress the bytes first, a second pass). Names are
/// caller-chosen, but the table is per backend and bounded, so a crafted collision set
/// only slows its sender.
#[inline]
fn fingerprint(b: &[u8]) -> u64 {
    let n = b.len();
    let w8 = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let w4 = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes")) as u64;
    let mut h = FxHasher::with_seed(n);
    if n >= 8 {
        let mut i = 0;
        while i + 8 < n {
            h.write_u64(w8(i));
            i += 8;
        }
        h.write_u64(w8(n - 8));
    } else if n >= 4 {
        h.write_u64((w4(0) << 32) | w4(n - 4));
    } else if n > 0 {
        h.write_u64(b[0] as u64 | (b[n / 2] as u64) << 8 | (b[n - 1] as u64) << 16);
    }
    // `finish` rotates the product's well-mixed high bits down, where hashbrown indexes
    h.finish()
}

/// The last name looked up that is not in the memo, kept inline: `unlock_named(x)` right
/// after `lock_named(x)` of a name used once then costs a short compare, not a second md5
/// (nor does it count as a second sighting).
const LAST_BYTES: usize = 64;

/// Fingerprints of names seen once and not memoised yet: a two-way set-associative table
/// as large as the memo, so a working set that fits the memo also fits here (a name
/// pushed out early is only memoised one use later).
const SEEN_SLOTS: usize = CAPACITY;

/// The memo itself: an instance, so that each unit test owns one (the backend's lives
/// in a backend-local static, `MEMO`).
pub struct NameMemo {
    memo: FlatMap<Box<[u8]>, Memo>,
    /// (fingerprint, length, bytes, memo) of the last name looked up outside the memo
    last: (u64, usize, [u8; LAST_BYTES], Option<Memo>),
    seen: [u64; SEEN_SLOTS],
}

impl Default for NameMemo {
    fn default() -> Self {
        NameMemo::new()
    }
}

impl NameMemo {
    pub const fn new() -> Self {
        NameMemo { memo: FlatMap::new(), last: (0, 0, [0; LAST_BYTES], None), seen: [0; SEEN_SLOTS] }
    }

    /// md5 of `name` (memoised), and the registry slot last seen for it.
    #[inline]
    pub fn lookup(&mut self, name: &str) -> Memo {
        let b = name.as_bytes();
        let f = fingerprint(b);
        if let Some(m) = self.memo.get(f, |k| same_bytes(k, b)) {
            return *m;
        }
        let (lf, len, bytes, memo) = &self.last;
        if let Some(m) = (*lf == f && same_bytes(&bytes[..*len], b)).then_some(*memo).flatten() {
            return m;
        }
        self.compute(b, f)
    }

    /// A name in neither the memo nor `last`: its md5, remembered in one of them.
    #[inline(never)]
    fn compute(&mut self, b: &[u8], f: u64) -> Memo {
        // The md5 is a long chain of arithmetic: the line `seen_before` reads after it,
        // likely not in cache under a stream of new names, loads meanwhile.
        crate::registry::prefetch(self.seen[seen_index(f)..].as_ptr().cast());
        let memo = Memo { hash: NameHash::of(b), slot: None, fp: f };
        // Longer names are not memoised: the memo's memory stays bounded (CAPACITY
        // names of at most MEMO_MAX_BYTES), and their md5 dwarfs a probe anyway.
        if b.len() <= MEMO_MAX_BYTES && self.seen_before(f) {
            if self.memo.len() >= CAPACITY {
                self.memo.clear();
            }
            self.memo.insert_new(f, b.into(), memo);
        } else {
            let (lf, len, bytes, m) = &mut self.last;
            if b.len() <= LAST_BYTES {
                (*lf, *len) = (f, b.len());
                bytes[..b.len()].copy_from_slice(b);
                *m = Some(memo);
            } else {
                *m = None;
            }
        }
        memo
    }

    /// Whether the name with fingerprint `f` was seen before (and forget it then);
    /// otherwise note it.
    fn seen_before(&mut self, f: u64) -> bool {
        let f = f | 1; // never 0, the empty slot
        let i = seen_index(f);
        let set = &mut self.seen[i..i + 2];
        if let Some(slot) = set.iter_mut().find(|s| **s == f) {
            *slot = 0;
            return true;
        }
        // an empty way, else the second way (the first keeps the older name)
        let way = if set[0] == 0 { 0 } else { 1 };
        set[way] = f;
        false
    }

    /// Remember the registry slot of `name` (valid while the generation is `generation`),
    /// in `last` or in the memo, wherever the name is. `fp`: the `fp` its `lookup` returned.
    pub fn set_slot(&mut self, name: &str, fp: u64, slot: i32, generation: u64) {
        let b = name.as_bytes();
        // `last` first: a name gets its first slot right after its first lookup, which
        // left it there.
        let (lf, len, bytes, memo) = &mut self.last;
        match memo.as_mut() {
            Some(m) if *lf == fp && same_bytes(&bytes[..*len], b) => m.slot = Some((slot, generation)),
            _ => {
                if let Some(e) = self.memo.get_mut(fp, |k| same_bytes(k, b)) {
                    e.slot = Some((slot, generation));
                }
            }
        }
    }
}

/// The first way of the set of fingerprint `f` (the two ways of a set share a cache line).
#[inline]
fn seen_index(f: u64) -> usize {
    (((f | 1) >> 40) as usize % SEEN_SLOTS) & !1
}

static MEMO: BackendLocal<NameMemo> = BackendLocal::new(NameMemo::new());

/// md5 of `name` (memoised in this backend), and the registry slot last seen for it.
#[inline]
pub fn lookup(name: &str) -> Memo {
    MEMO.with(|m| m.lookup(name))
}

pub fn hash(name: &str) -> NameHash {
    lookup(name).hash
}

/// `NameMemo::set_slot` on this backend's memo.
pub fn set_slot(name: &str, fp: u64, slot: i32, generation: u64) {
    MEMO.with(|m| m.set_slot(name, fp, slot, generation));
}

#[cfg(test)]
mod unit {
    use super::{fingerprint, NameMemo};

    /// Each test owns its memo: cargo runs tests on several threads, and the backend's
    /// static is for the backend's one thread only.
    fn memo() -> Box<NameMemo> {
        Box::new(NameMemo::new())
    }

    #[test]
    fn memo_returns_the_md5() {
        let mut m = memo();
        // three rounds: first sight, memoised at the second, served from the memo at the third
        for _ in 0..3 {
            for n in ["a", "daily-report-job", "ü", "", "a-name-longer-than-the-sixty-four-bytes-kept-inline-for-the-last-lookup"]
            {
                assert_eq!(m.lookup(n).hash.key64(), crate::name::hash::key64(n.as_bytes()));
                assert_eq!(m.lookup(n).hash.check64(), crate::name::hash::NameHash::of(n.as_bytes()).check64());
            }
        }
    }

    #[test]
    fn a_name_is_memoised_the_second_time_it_is_seen() {
        let mut m = memo();
        let n = "memo-second-sight";
        let b = n.as_bytes();
        let in_memo = |m: &NameMemo| m.memo.get(fingerprint(b), |k| &k[..] == b).is_some();
        m.lookup(n);
        assert!(!in_memo(&m));
        // straight again (unlock after lock): served by `last`, not a second sighting
        m.lookup(n);
        assert!(!in_memo(&m));
        m.lookup("memo-something-else");
        m.lookup(n);
        assert!(in_memo(&m));
    }

    #[test]
    fn a_slot_stays_with_its_name() {
        let mut m = memo();
        let (a, b) = ("memo-slot-a", "memo-slot-b");
        let fa = m.lookup(a).fp;
        m.set_slot(a, fa, 7, 3);
        assert_eq!(m.lookup(a).slot, Some((7, 3)));
        // b pushes a out of `last`; a's slot went with it (a was never memoised)
        let fb = m.lookup(b).fp;
        m.set_slot(b, fb, 9, 3);
        assert_eq!(m.lookup(b).slot, Some((9, 3)));
        assert_eq!(m.lookup(a).slot, None);
    }
}
