//! The small hash maps of the backend-local tables every lock call probes (the name
//! memo, the per-session holds): `hashbrown::HashTable`, which takes the caller's hash
//! and an equality closure, behind the few operations those tables need. The full
//! 64-bit hash is stored with each entry and compared before the key, so a probe that
//! lands on another entry's control byte almost never compares keys. Callers supply
//! hashes whose low bits and top seven bits are both well mixed (hashbrown indexes with
//! the former and matches control bytes with the latter).

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

pub struct FlatMap<K, V> {
    table: HashTable<(u64, K, V)>,
}

impl<K, V> Default for FlatMap<K, V> {
    fn default() -> Self {
        FlatMap::new()
    }
}

fn stored<K, V>(e: &(u64, K, V)) -> u64 {
    e.0
}

impl<K, V> FlatMap<K, V> {
    pub const fn new() -> Self {
        FlatMap { table: HashTable::new() }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The value stored under a key with hash `h` for which `eq` holds.
    #[inline]
    pub fn get_mut(&mut self, h: u64, eq: impl Fn(&K) -> bool) -> Option<&mut V> {
        self.table.find_mut(h, |(eh, k, _)| *eh == h && eq(k)).map(|(_, _, v)| v)
    }

    #[inline]
    pub fn get(&self, h: u64, eq: impl Fn(&K) -> bool) -> Option<&V> {
        self.table.find(h, |(eh, k, _)| *eh == h && eq(k)).map(|(_, _, v)| v)
    }

    /// The value of the key, inserted as `make()` first when absent: one probe either way.
    #[inline]
    pub fn get_or_insert(&mut self, h: u64, eq: impl Fn(&K) -> bool, make: impl FnOnce() -> (K, V)) -> &mut V {
        match self.table.entry(h, |(eh, k, _)| *eh == h && eq(k), stored) {
            Entry::Occupied(o) => &mut o.into_mut().2,
            Entry::Vacant(slot) => {
                let (k, v) = make();
                &mut slot.insert((h, k, v)).into_mut().2
            }
        }
    }

    /// Let `f` change the value of the key, if present; remove the entry when `f` returns
    /// false. One probe.
    #[inline]
    pub fn update_or_remove(&mut self, h: u64, eq: impl Fn(&K) -> bool, f: impl FnOnce(&mut V) -> bool) {
        if let Ok(mut o) = self.table.find_entry(h, |(eh, k, _)| *eh == h && eq(k)) {
            if !f(&mut o.get_mut().2) {
                o.remove();
            }
        }
    }

    /// Insert a key the caller knows is absent; returns its value.
    pub fn insert_new(&mut self, h: u64, k: K, v: V) -> &mut V {
        &mut self.table.insert_unique(h, (h, k, v), stored).into_mut().2
    }

    /// Remove the entry of a key with hash `h` for which `eq` holds; its value.
    pub fn remove(&mut self, h: u64, eq: impl Fn(&K) -> bool) -> Option<V> {
        let o = self.table.find_entry(h, |(eh, k, _)| *eh == h && eq(k)).ok()?;
        Some(o.remove().0 .2)
    }

    /// Keep only the entries for which `keep` holds (it may also change them); a table
    /// that was once large and is mostly empty now shrinks.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.table.retain(|(_, k, v)| keep(k, v));
        if self.table.len() * 8 < self.table.capacity() {
            self.table.shrink_to(self.table.len() * 2, stored);
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.table.iter().map(|(_, k, _)| k)
    }

    pub fn clear(&mut self) {
        self.table.clear();
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
