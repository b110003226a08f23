//! A small open-addressing hash map for the backend-local tables every lock call probes
//! (the name memo, the per-session holds).
//!
//! `std`'s HashMap costs more than the lock manager's own hash probe here: a generic
//! hasher pass, SIMD group matching and a `memcmp` call per hit. This map keeps the full
//! 64-bit hash of every entry in a dense array, probes that linearly (one cache line holds
//! eight), and compares keys only when the hashes match, which outside a real hit almost
//! never happens. Callers supply the hash and the key comparison. Removal shifts the
//! entries after the hole back (no tombstones), so a table that sees a key inserted and
//! removed per call stays as small and as fast as the set of keys present.

/// The hash of an empty slot; real hashes are made odd, so never this.
const EMPTY: u64 = 0;

pub struct FlatMap<K, V> {
    /// A power of two in length (or empty); EMPTY where `entries` is None.
    hashes: Vec<u64>,
    entries: Vec<Option<(K, V)>>,
    len: usize,
}

impl<K, V> Default for FlatMap<K, V> {
    fn default() -> Self {
        FlatMap::new()
    }
}

impl<K, V> FlatMap<K, V> {
    pub const fn new() -> Self {
        FlatMap { hashes: Vec::new(), entries: Vec::new(), len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn start(&self, h: u64) -> usize {
        // the high bits: multiplicative hashes mix into those best
        (h >> (64 - self.hashes.len().trailing_zeros())) as usize
    }

    /// The value stored under a key with hash `h` for which `eq` holds.
    #[inline]
    pub fn get_mut(&mut self, h: u64, eq: impl Fn(&K) -> bool) -> Option<&mut V> {
        let i = self.find(h | 1, eq)?;
        self.entries[i].as_mut().map(|(_, v)| v)
    }

    #[inline]
    pub fn get(&self, h: u64, eq: impl Fn(&K) -> bool) -> Option<&V> {
        let i = self.find(h | 1, eq)?;
        self.entries[i].as_ref().map(|(_, v)| v)
    }

    #[inline]
    fn find(&self, h: u64, eq: impl Fn(&K) -> bool) -> Option<usize> {
        debug_assert!(h & 1 == 1);
        if self.hashes.is_empty() {
            return None;
        }
        let mask = self.hashes.len() - 1;
        let mut i = self.start(h);
        loop {
            let s = self.hashes[i];
            if s == EMPTY {
                return None;
            }
            if s == h {
                if let Some((k, _)) = &self.entries[i] {
                    if eq(k) {
                        return Some(i);
                    }
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// The value of the key, inserted as `make()` first when absent: one probe either way.
    #[inline]
    pub fn get_or_insert(&mut self, h: u64, eq: impl Fn(&K) -> bool, make: impl FnOnce() -> (K, V)) -> &mut V {
        // keep room for an insert, so one probe, stopping at the key or at the empty
        // slot where it goes, serves both cases
        if (self.len + 1) * 2 > self.hashes.len() {
            self.grow();
        }
        let h = h | 1;
        let mask = self.hashes.len() - 1;
        let mut i = self.start(h);
        loop {
            let s = self.hashes[i];
            if s == EMPTY {
                self.hashes[i] = h;
                self.entries[i] = Some(make());
                self.len += 1;
                break;
            }
            if s == h && self.entries[i].as_ref().is_some_and(|(k, _)| eq(k)) {
                break;
            }
            i = (i + 1) & mask;
        }
        self.entries[i].as_mut().map(|(_, v)| v).expect("present")
    }

    /// Let `f` change the value of the key, if present; remove the entry when `f` returns
    /// false. One probe.
    #[inline]
    pub fn update_or_remove(&mut self, h: u64, eq: impl Fn(&K) -> bool, f: impl FnOnce(&mut V) -> bool) {
        let Some(i) = self.find(h | 1, eq) else { return };
        let keep = match &mut self.entries[i] {
            Some((_, v)) => f(v),
            None => return,
        };
        if !keep {
            self.remove_at(i);
        }
    }

    /// Insert a key the caller knows is absent; returns its value.
    pub fn insert_new(&mut self, h: u64, k: K, v: V) -> &mut V {
        // at most half full: probe sequences stay a slot or two long
        if (self.len + 1) * 2 > self.hashes.len() {
            self.grow();
        }
        let i = self.place(h | 1, k, v);
        self.len += 1;
        self.entries[i].as_mut().map(|(_, v)| v).expect("just placed")
    }

    /// Remove the entry of a key with hash `h` for which `eq` holds; its value.
    pub fn remove(&mut self, h: u64, eq: impl Fn(&K) -> bool) -> Option<V> {
        let i = self.find(h | 1, eq)?;
        self.remove_at(i)
    }

    fn remove_at(&mut self, i: usize) -> Option<V> {
        let (_, v) = self.entries[i].take()?;
        self.hashes[i] = EMPTY;
        self.len -= 1;
        // Backward shift: an entry after the hole moves into it when the hole lies on its
        // probe path (between its home slot and where it is), so every key stays
        // reachable from its home slot without crossing an empty slot.
        let mask = self.hashes.len() - 1;
        let (mut hole, mut j) = (i, (i + 1) & mask);
        loop {
            let hj = self.hashes[j];
            if hj == EMPTY {
                break;
            }
            let home = self.start(hj);
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.hashes[hole] = hj;
                self.entries[hole] = self.entries[j].take();
                self.hashes[j] = EMPTY;
                hole = j;
            }
            j = (j + 1) & mask;
        }
        Some(v)
    }

    fn place(&mut self, h: u64, k: K, v: V) -> usize {
        let mask = self.hashes.len() - 1;
        let mut i = self.start(h);
        while self.hashes[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.hashes[i] = h;
        self.entries[i] = Some((k, v));
        i
    }

    fn grow(&mut self) {
        let cap = (self.hashes.len() * 2).max(64);
        self.rebuild(cap, |_, _| true);
    }

    fn rebuild(&mut self, cap: usize, mut keep: impl FnMut(&K, &mut V) -> bool) {
        let mut kept = Vec::with_capacity(self.len);
        for (h, e) in self.hashes.iter_mut().zip(self.entries.iter_mut()) {
            if let Some((k, mut v)) = e.take() {
                if keep(&k, &mut v) {
                    kept.push((*h, k, v));
                }
            }
            *h = EMPTY;
        }
        // shrink a table that was once large and is mostly empty now
        let cap = if kept.len() * 8 < cap { (kept.len() * 2 + 2).next_power_of_two().max(64).min(cap) } else { cap };
        if cap != self.hashes.len() {
            self.hashes = vec![EMPTY; cap];
            self.entries = (0..cap).map(|_| None).collect();
        }
        self.len = kept.len();
        for (h, k, v) in kept {
            self.place(h, k, v);
        }
    }

    /// Keep only the entries for which `keep` holds (it may also change them).
    pub fn retain(&mut self, keep: impl FnMut(&K, &mut V) -> bool) {
        if self.len > 0 {
            self.rebuild(self.hashes.len(), keep);
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.iter().filter_map(|e| e.as_ref().map(|(k, _)| k))
    }

    pub fn clear(&mut self) {
        self.hashes.iter_mut().for_each(|h| *h = EMPTY);
        self.entries.iter_mut().for_each(|e| *e = None);
        self.len = 0;
    }
}

/// Byte-slice equality without a `memcmp` call for the short strings lock names are:
/// whole 8-byte words, the last one overlapping.
#[inline]
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let w8 = |s: &[u8], i: usize| u64::from_ne_bytes(s[i..i + 8].try_into().expect("8 bytes"));
    let w4 = |s: &[u8], i: usize| u32::from_ne_bytes(s[i..i + 4].try_into().expect("4 bytes"));
    if n >= 8 {
        let mut i = 0;
        while i + 8 < n {
            if w8(a, i) != w8(b, i) {
                return false;
            }
            i += 8;
        }
        w8(a, n - 8) == w8(b, n - 8)
    } else if n >= 4 {
        w4(a, 0) == w4(b, 0) && w4(a, n - 4) == w4(b, n - 4)
    } else {
        a == b
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn same_bytes_is_slice_equality() {
        let words: Vec<Vec<u8>> = (0..40usize).map(|n| (0..n as u8).collect()).collect();
        for a in &words {
            for b in &words {
                assert_eq!(same_bytes(a, b), a == b);
                for i in 0..a.len() {
                    let mut c = a.clone();
                    c[i] ^= 0x20;
                    assert!(!same_bytes(a, &c));
                }
            }
        }
    }

    #[test]
    fn insert_get_retain_clear() {
        let mut m: FlatMap<u64, u64> = FlatMap::new();
        // a bad hash (every key collides) must still be correct, only slower
        let hashes: [fn(u64) -> u64; 2] = [|k| k.wrapping_mul(0x9e37_79b9_7f4a_7c15), |_| 42];
        for h in hashes {
            m.clear();
            for k in 0..1000u64 {
                assert!(m.get(h(k), |&x| x == k).is_none());
                *m.insert_new(h(k), k, k * 2) += 1;
            }
            assert_eq!(m.len(), 1000);
            for k in 0..1000u64 {
                assert_eq!(m.get(h(k), |&x| x == k), Some(&(k * 2 + 1)));
            }
            m.retain(|&k, v| {
                *v = 0;
                k % 3 == 0
            });
            assert_eq!(m.len(), 334);
            for k in 0..1000u64 {
                assert_eq!(m.get_mut(h(k), |&x| x == k).map(|v| *v), (k % 3 == 0).then_some(0));
            }
            // get_or_insert and update_or_remove, on present and absent keys
            for k in 0..1000u64 {
                let v = m.get_or_insert(h(k), |&x| x == k, || (k, 7));
                assert_eq!(*v, if k % 3 == 0 { 0 } else { 7 });
                *v += 1;
            }
            assert_eq!(m.len(), 1000);
            for k in 0..1000u64 {
                m.update_or_remove(
                    h(k),
                    |&x| x == k,
                    |v| {
                        *v -= 1;
                        k % 3 == 0
                    },
                );
            }
            assert_eq!(m.len(), 334);
            // remove every other remaining key, in an order that shifts entries around
            for k in (0..1000u64).rev().filter(|k| k % 6 == 0) {
                assert_eq!(m.remove(h(k), |&x| x == k), Some(0));
                assert_eq!(m.remove(h(k), |&x| x == k), None);
            }
            assert_eq!(m.len(), 167);
            for k in 0..1000u64 {
                assert_eq!(m.get(h(k), |&x| x == k).is_some(), k % 3 == 0 && k % 6 != 0, "key {k}");
            }
        }
    }
}
