//! Eviction: when the registry is full, the least recently used names whose locks nobody
//! holds or awaits make room (see the locking rules in the registry's doc).

use std::sync::atomic::{Ordering::Relaxed, Ordering::SeqCst};

use super::{pair_key, Kind, Registry, NO_SLOT};
use crate::pg::lockmgr::Key;

impl Registry {
    /// Free the least recently used quarter of the entries whose locks nobody holds or
    /// awaits (at least one), like pg_stat_statements' entry_dealloc. A pass costs a
    /// walk of the lock lists and a scan of the entries whatever it frees, so it frees
    /// a large share. It reads only the compact `Meta`s (a sample of them, then one scan)
    /// and allocates nothing in proportion to the registry (a list of every candidate
    /// was a fresh allocation of up to `16 * max_names` bytes, page faults included, per
    /// pass). Out of line and cold: it runs once per quarter of the capacity of new
    /// names, and inlined into the insert it would spread the insert's code thin.
    #[cold]
    #[inline(never)]
    pub(super) fn evict(&self) {
        let _g = self.lock(true);
        // Before the walk: a lock granted after the walk read its partition is checked
        // against this bump by its caller (see the locking rules).
        self.header().generation.fetch_add(1, SeqCst);
        let Some(keys_in_use) = advisory_keys_in_use() else { return };
        let cap = self.capacity() as i32;
        // The age of an occupied entry, with its slot to break ties.
        let age = |s: i32| -> Option<(i64, i32)> {
            // SAFETY: exclusive lock held: identities are stable.
            let e = unsafe { &*self.meta(s) };
            (e.kind != 0).then(|| (e.last_used.load(Relaxed), s))
        };
        // Whether the lock an entry names is held or awaited (the entry must stay).
        let in_use = |s: i32| -> bool {
            // SAFETY: exclusive lock held; s is occupied, and kind was written from a Kind.
            let e = unsafe { &*self.meta(s) };
            !keys_in_use.is_empty() && keys_in_use.binary_search(&(e.kind, e.key)).is_ok()
        };
        // An entry that may go: occupied, its lock not held nor awaited.
        let candidate = |s: i32| age(s).filter(|_| !in_use(s));
        // Only which quarter is oldest matters, not its order, nor its exact size: the
        // cut-off is that quantile of the candidates among evenly spaced slots (slot order
        // says nothing of age), and everything up to it goes, at most n. Reading only
        // those slots, not all of them, halves what a pass streams through the caches
        // (where it would push out the lock manager's own hot lines). A small registry,
        // or one whose sampled slots hold no candidate, is scanned whole, and then the
        // selection is exact.
        const SAMPLE: usize = 1024;
        let n = (self.capacity() / 4).max(1);
        let stride = (self.capacity() / SAMPLE).max(1);
        // The sample's allocation is bounded by max_names, not by anything a caller
        // passes; still, a failed one ends the pass (nothing evicted) instead of the
        // backend.
        let mut sample: Vec<(i64, i32)> = Vec::new();
        if sample.try_reserve_exact(cap as usize / stride + 1).is_err() {
            return;
        }
        sample.extend((0..cap).step_by(stride).filter_map(candidate));
        let k = if stride == 1 {
            // every slot was read: the selection is exact
            n
        } else if !sample.is_empty() {
            // n of the ~sample.len() * stride candidates go: in the sample, n / stride
            (n / stride).max(1)
        } else {
            if sample.try_reserve_exact(cap as usize).is_err() {
                return;
            }
            sample.extend((0..cap).filter_map(candidate));
            n
        };
        if sample.is_empty() {
            return;
        }
        let cut = if k >= sample.len() { None } else { Some(*sample.select_nth_unstable(k - 1).1) };
        // The scan goes up from where the previous one stopped (a clock hand). Freed
        // slots are taken again from the top of the run down (the free list is a stack),
        // so the slots just above the last run are the ones filled longest ago: under a
        // stream of new names the oldest quarter is found there, densely, without reading
        // the rest of the registry. Each unlink reads a random bucket: a victim is
        // unlinked AHEAD victims after its bucket was asked for.
        const AHEAD: usize = 8;
        let mut pending = [NO_SLOT; AHEAD];
        let mut found = 0;
        // SAFETY: exclusive lock held: the hand is ours.
        let hand = unsafe { (*self.hdr).hand } as i32;
        let mut last = hand;
        for i in 1..=cap {
            if found == n {
                break;
            }
            let s = (hand + i - 1) % cap;
            last = s;
            // the age first: most entries are too young, and the age is in hand
            let Some(c) = age(s) else { continue };
            if cut.is_some_and(|cut| c > cut) || in_use(s) {
                continue;
            }
            // SAFETY: exclusive lock held; s is occupied.
            let m = unsafe { &*self.meta(s) };
            // SAFETY: kind != 0 was written from a Kind.
            self.prefetch_bucket(unsafe { std::mem::transmute::<u8, Kind>(m.kind) }, m.key);
            let p = std::mem::replace(&mut pending[found % AHEAD], s);
            if p != NO_SLOT {
                self.unlink(p);
            }
            found += 1;
        }
        for i in found..found + AHEAD {
            if pending[i % AHEAD] != NO_SLOT {
                self.unlink(pending[i % AHEAD]);
            }
        }
        // SAFETY: exclusive lock held.
        unsafe { (*self.hdr).hand = ((last + 1) % cap.max(1)) as u32 };
        let h = self.header();
        h.evictions.fetch_add(found as u64, Relaxed);
        h.generation.fetch_add(1, SeqCst);
    }

    /// Remove one entry; caller holds the exclusive lock.
    fn unlink(&self, slot: i32) {
        // SAFETY: exclusive lock held by the caller.
        unsafe {
            let e = &mut *self.meta(slot);
            let kind: Kind = std::mem::transmute::<u8, Kind>(e.kind);
            let mut link = self.bucket(self.bucket_of(kind, e.key));
            while *link != slot {
                link = &raw mut (*self.meta(*link)).next;
            }
            *link = e.next;
            e.kind = 0;
            let h = &mut *self.hdr;
            e.next = h.free_head;
            h.free_head = slot;
            h.used.store(h.used.load(Relaxed) - 1, Relaxed);
        }
    }
}

/// Registry keys (kind, key) of every advisory lock held or awaited right now, in any
/// database, sorted for binary search. Takes each lock-manager partition lock in turn
/// (briefly, shared): call it only when evicting. None when memory for the list ran out
/// (Rust's allocation would abort; the pass then evicts nothing): the list grows with
/// the locks in the lock table, up to its size, without a bound of ours.
fn advisory_keys_in_use() -> Option<Vec<(u8, i64)>> {
    let mut keys: Vec<(u8, i64)> = Vec::new();
    let mut failed = false;
    let mut push = |k: (u8, i64)| {
        if keys.len() == keys.capacity() && keys.try_reserve(keys.len().max(64)).is_err() {
            failed = true;
            return;
        }
        keys.push(k);
    };
    crate::pg::lockmgr::for_each_advisory_key_in_use(|key| match key {
        Key::Int64(k) => push((Kind::Bigint as u8, k)),
        Key::Pair(k1, k2) => {
            push((Kind::Pair as u8, pair_key(k1, k2)));
            push((Kind::Namespace as u8, k1 as i64));
        }
    });
    if failed {
        return None;
    }
    keys.sort_unstable();
    keys.dedup();
    Some(keys)
}
