//! The name registry: a fixed-capacity hash table in shared memory that remembers which
//! name produced which advisory-lock key, so monitoring can show locks by name.
//!
//! # Where it lives
//! One flat region: `Header`, then `capacity` `Meta`s, then `capacity` `Entry`s, then the
//! bucket array. Slot `s` is `Meta` `s` plus `Entry` `s`. Links are slot indices, never
//! pointers, so the same bytes work in the main shared memory segment (with
//! `shared_preload_libraries`, see [`shmem`]) and in a dynamic shared memory segment that
//! each backend may map at a different address (PostgreSQL 17+ without preloading).
//!
//! A slot is split in two because a lookup walks bucket chains and an eviction pass reads
//! every slot's age: kept in 32-byte `Meta`s, two to a cache line, that work touches a
//! tenth of the memory it would in the 320-byte whole. Under a stream of new names (each
//! one a lookup miss, an insert and a share of an eviction pass) cache misses are most of
//! what the registry costs.
//!
//! # Locking rules
//! - `Header::lock` (one LWLock) protects the bucket array, the free list, the count of
//!   entries in use and the identity of every entry (kind, key, check, name). Readers take
//!   it shared; only inserting a new name and evicting take it exclusive.
//! - Everything else in an entry (last use, holder, role, statistics) and the other
//!   counters in the header are atomics, updated with no LWLock. Such an update can land on an entry
//!   that was just evicted and reused: that misattributes one count, never corrupts.
//! - `Header::generation` changes whenever an entry may be removed: an eviction pass
//!   bumps it once before it reads which locks are in use and once after it unlinked its
//!   victims. Each backend caches the slot of the names it uses, stamped with the
//!   generation read *before* the lookup that found the slot, and trusts the cache only
//!   while the generation is unchanged, so a name this backend already registered costs
//!   one atomic load (and a stamp taken after the lookup could bless a slot that an
//!   eviction freed and another name took in between).
//! - An eviction pass holds the lock exclusive from before it reads which advisory locks
//!   are in use (walking every process's lock lists, one lock-manager partition lock at
//!   a time, in shared mode) until its victims are unlinked. Nobody takes the registry
//!   lock while holding a partition lock, so the order registry → partition cannot
//!   deadlock. A lock granted after the walk read its partition is not seen by the pass;
//!   its caller checks the generation again after the grant (see `lock`): unchanged
//!   means no pass started before the grant, changed means it looks the name up again,
//!   which waits for the pass to finish and re-registers a name it evicted.

use std::sync::atomic::{Ordering::Relaxed, Ordering::SeqCst};

use pgrx::pg_sys;

use crate::pg::lockmgr::Key;
use layout::{align, nbuckets, shmem_size, Entry, Header, Meta, Stats, MAGIC};

mod evict;
pub mod layout;
pub mod remember;
pub mod shmem;

const NO_SLOT: i32 = -1;

/// What a registry key identifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// `lock_named(name)`: key = named_lock_key(name)
    Bigint = 1,
    /// `lock_pair(namespace, name)`: key = key32(namespace) << 32 | key32(name)
    Pair = 2,
    /// `lock_pair(namespace, id)`: key = key32(namespace); the id is the second half
    Namespace = 3,
}

/// Identity of a registry entry: the key, plus the digest bytes after the key, which
/// differ when two different names share the key (a collision).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegKey {
    pub kind: Kind,
    pub key: i64,
    pub check: u64,
}

pub fn pair_key(k1: i32, k2: i32) -> i64 {
    ((k1 as i64) << 32) | (k2 as u32 as i64)
}

impl Kind {
    /// The name monitoring shows for this kind of entry.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Bigint => "bigint",
            Kind::Pair => "pair",
            Kind::Namespace => "namespace",
        }
    }
}

impl RegKey {
    /// The registry entries that may name a lock with this lock-manager key, best first.
    fn candidates(lock: Key) -> impl Iterator<Item = (Kind, i64)> {
        let (exact, namespace) = match lock {
            Key::Int64(k) => ((Kind::Bigint, k), None),
            Key::Pair(k1, k2) => ((Kind::Pair, pair_key(k1, k2)), Some((Kind::Namespace, k1 as i64))),
        };
        std::iter::once(exact).chain(namespace)
    }
}

/// A handle on an attached registry.
#[derive(Clone, Copy)]
pub struct Registry {
    hdr: *mut Header,
}

// The LWLock calls go without pgrx's FFI guard (a sigsetjmp each; two per registry
// visit): see `pg::unguarded` for why they cannot raise here.
use crate::pg::unguarded;

/// Holds an LWLock (the registry's, the fence's); releases it on drop, also when an
/// ERROR unwinds.
pub(crate) struct Guard(*mut pg_sys::LWLock);

impl Guard {
    pub(crate) fn new(lock: *mut pg_sys::LWLock, exclusive: bool) -> Guard {
        let mode = if exclusive { pg_sys::LWLockMode::LW_EXCLUSIVE } else { pg_sys::LWLockMode::LW_SHARED };
        // SAFETY: `lock` points into attached shared memory initialised by
        // LWLockInitialize; see `unguarded` for why no guard is needed.
        unsafe { unguarded::LWLockAcquire(lock, mode) };
        Guard(lock)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Still held even when an ERROR is unwinding through here: pgrx turns the error
        // into a panic at the FFI call that raised it, and the transaction abort that
        // releases every LWLock runs only after the panic has left our frames. Nothing
        // under this lock releases LWLocks itself.
        // SAFETY: as in `new`; held by this backend (checked in debug builds).
        unsafe {
            debug_assert!(unguarded::LWLockHeldByMe(self.0));
            unguarded::LWLockRelease(self.0);
        }
    }
}

impl Registry {
    /// Lay out an empty registry in `mem` (zeroed or not) of `shmem_size(capacity)` bytes.
    ///
    /// # Safety
    /// `mem` must be valid for writes of that size, 8-aligned, and not yet shared with any
    /// other process.
    pub unsafe fn init(mem: *mut u8, capacity: usize, tranche_id: i32) -> Registry {
        unsafe {
            std::ptr::write_bytes(mem, 0, shmem_size(capacity));
            let reg = Registry { hdr: mem.cast() };
            let h = &mut *reg.hdr;
            pg_sys::LWLockInitialize(&mut h.lock, tranche_id);
            h.magic = MAGIC;
            h.tranche_id = tranche_id;
            h.capacity = capacity as u32;
            h.nbuckets = nbuckets(capacity) as u32;
            h.entries_at = align(size_of::<Header>()) + align(capacity * size_of::<Meta>());
            h.buckets_at = h.entries_at + align(capacity * size_of::<Entry>());
            for b in 0..h.nbuckets as usize {
                *reg.bucket(b) = NO_SLOT;
            }
            for i in 0..capacity {
                (*reg.meta(i as i32)).next = if i + 1 < capacity { i as i32 + 1 } else { NO_SLOT };
            }
            h.free_head = if capacity > 0 { 0 } else { NO_SLOT };
            reg
        }
    }

    /// # Safety
    /// `mem` must point to a registry laid out by `init` that stays mapped for the life of
    /// the backend.
    pub unsafe fn attach(mem: *mut u8) -> Option<Registry> {
        let reg = Registry { hdr: mem.cast() };
        // SAFETY: per the contract, the header is initialised.
        (unsafe { (*reg.hdr).magic } == MAGIC).then_some(reg)
    }

    /// # Safety
    /// `mem` must be a registry that `attach` accepted in this backend.
    #[inline]
    pub unsafe fn attached(mem: *mut u8) -> Registry {
        Registry { hdr: mem.cast() }
    }

    pub fn header(&self) -> &Header {
        // SAFETY: attached registries stay mapped; all fields read through this shared
        // reference are atomics or written only before the registry was published.
        unsafe { &*self.hdr }
    }

    pub fn tranche_id(&self) -> i32 {
        self.header().tranche_id
    }

    pub fn capacity(&self) -> usize {
        self.header().capacity as usize
    }

    pub fn used(&self) -> usize {
        self.header().used.load(Relaxed) as usize
    }

    fn lock(&self, exclusive: bool) -> Guard {
        // SAFETY: the LWLock lives in mapped shared memory for the backend's lifetime.
        Guard::new(unsafe { &raw mut (*self.hdr).lock }, exclusive)
    }

    fn meta(&self, slot: i32) -> *mut Meta {
        debug_assert!(slot >= 0 && (slot as usize) < self.capacity());
        // SAFETY: slot is within the meta array (checked by callers via capacity).
        unsafe { (self.hdr as *mut u8).add(align(size_of::<Header>())).cast::<Meta>().add(slot as usize) }
    }

    fn entry(&self, slot: i32) -> *mut Entry {
        debug_assert!(slot >= 0 && (slot as usize) < self.capacity());
        // SAFETY: slot is within the entry array.
        unsafe { (self.hdr as *mut u8).add(self.header().entries_at).cast::<Entry>().add(slot as usize) }
    }

    /// The entry's atomics and statistics may be used without the lock.
    pub fn slot(&self, slot: i32) -> &Entry {
        // SAFETY: in bounds; the fields used through this reference are atomics.
        unsafe { &*self.entry(slot) }
    }

    fn bucket(&self, b: usize) -> *mut i32 {
        debug_assert!(b < self.header().nbuckets as usize);
        // SAFETY: b < nbuckets, within the bucket array.
        unsafe { (self.hdr as *mut u8).add(self.header().buckets_at).cast::<i32>().add(b) }
    }

    fn bucket_of(&self, kind: Kind, key: i64) -> usize {
        // Keys are md5 prefixes, except the id half of pair keys: mix before masking.
        let h = (key as u64 ^ ((kind as u64) << 59)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> 32) as usize & (self.header().nbuckets as usize - 1)
    }

    /// Slot of the entry with this kind and key (whatever its check). Caller holds the lock.
    fn find(&self, kind: Kind, key: i64) -> Option<i32> {
        // SAFETY: caller holds the registry lock, so chains and identities are stable.
        unsafe {
            let mut s = *self.bucket(self.bucket_of(kind, key));
            while s != NO_SLOT {
                let e = &*self.meta(s);
                if e.kind == kind as u8 && e.key == key {
                    return Some(s);
                }
                s = e.next;
            }
        }
        None
    }

    /// The stored name, with "…" appended when it was cut, and whether it was.
    fn stored_name(&self, slot: i32) -> (String, bool) {
        // SAFETY: caller holds the registry lock; name bytes were copied from a valid str
        // cut at a char boundary, so they are valid UTF-8.
        unsafe {
            let e = &*self.entry(slot);
            let bytes = &e.name[..e.name_len as usize];
            let mut name = String::with_capacity(bytes.len() + if e.truncated { 3 } else { 0 });
            name.push_str(std::str::from_utf8(bytes).unwrap_or("<invalid UTF-8>"));
            if e.truncated {
                name.push('…');
            }
            (name, e.truncated)
        }
    }

    pub fn generation(&self) -> u64 {
        self.header().generation.load(Relaxed)
    }

    /// The generation, read after a lock grant: ordered after the grant, so that it sees
    /// the bump of any eviction pass whose walk of the lock lists came before the grant
    /// (that walk and the grant take the same partition lock, in turn).
    #[inline]
    pub fn generation_after_grant(&self) -> u64 {
        self.header().generation.load(SeqCst)
    }

    /// Whether a request by `pid` for the lock named by `slot` will likely have to wait:
    /// its last grant went to another backend, or came after a wait. (A hint only: the
    /// record is not cleared on release.)
    #[inline]
    pub fn likely_busy(&self, slot: i32, pid: i32) -> bool {
        let e = self.slot(slot);
        let h = e.held_by.load(Relaxed);
        (h != 0 && h != pid) || e.contended.load(Relaxed)
    }

    /// Record that `pid` has just been granted the lock named by `slot`, after a wait or
    /// not.
    pub fn note_granted(&self, slot: i32, pid: i32, at: i64, waited: bool) {
        let e = self.slot(slot);
        // stored only on change, like the rest: a hot lock's line is shared by everyone
        if e.contended.load(Relaxed) != waited {
            e.contended.store(waited, Relaxed);
        }
        if e.held_by.load(Relaxed) != pid {
            e.held_by.store(pid, Relaxed);
        }
        if e.held_since.load(Relaxed) != at {
            e.held_since.store(at, Relaxed);
        }
    }

    /// Record the end of the lease under which backend `pid` holds `slot`'s lock, for
    /// the view (which shows it only on `pid`'s own row). Off the lock path: only lease
    /// calls write it.
    pub fn note_lease(&self, slot: i32, pid: i32, expires: i64) {
        let e = self.slot(slot);
        e.lease_pid.store(pid, Relaxed);
        e.lease_expires.store(expires, Relaxed);
    }

    /// Clear the lease end recorded for `slot` if it is still `pid`'s `expires` (the
    /// slot may have been given to another holder or name since).
    pub fn clear_lease(&self, slot: i32, pid: i32, expires: i64) {
        let e = self.slot(slot);
        if e.lease_pid.load(Relaxed) == pid {
            let _ = e.lease_expires.compare_exchange(expires, 0, Relaxed, Relaxed);
        }
    }

    /// Start loading the bucket a lookup of this key reads (done as soon as a new name's
    /// key is known, so that the load overlaps the work before the registry visit).
    #[inline]
    pub fn prefetch_bucket(&self, kind: Kind, key: i64) {
        prefetch(self.bucket(self.bucket_of(kind, key)).cast());
    }

    /// What the registry knows about each lock-manager key, under one shared lock (the
    /// view resolves thousands of locks at once).
    pub fn resolve(&self, keys: impl Iterator<Item = Key>) -> Vec<Option<Resolved>> {
        let _g = self.lock(false);
        keys.map(|lock| {
            RegKey::candidates(lock).enumerate().find_map(|(i, (kind, key))| {
                let s = self.find(kind, key)?;
                let e = self.slot(s);
                Some(Resolved {
                    name: self.stored_name(s).0,
                    role: e.role.load(Relaxed),
                    namespace_only: i == 1,
                    held_by: e.held_by.load(Relaxed),
                    held_since: e.held_since.load(Relaxed),
                    lease_pid: e.lease_pid.load(Relaxed),
                    lease_expires: e.lease_expires.load(Relaxed),
                })
            })
        })
        .collect()
    }

    /// Copy of every entry, for the monitoring views (one pass under the shared lock).
    pub fn snapshot(&self) -> Vec<Snap> {
        let _g = self.lock(false);
        let mut out = Vec::with_capacity(self.used());
        for s in 0..self.capacity() as i32 {
            // SAFETY: shared lock held: identities are stable.
            let (m, e) = unsafe { (&*self.meta(s), &*self.entry(s)) };
            if m.kind == 0 {
                continue;
            }
            let (name, truncated) = self.stored_name(s);
            out.push(Snap {
                // SAFETY: kind != 0 was written from a Kind.
                kind: unsafe { std::mem::transmute::<u8, Kind>(m.kind) },
                key: m.key,
                name,
                truncated,
                role: e.role.load(Relaxed),
                held_by: e.held_by.load(Relaxed),
                held_since: e.held_since.load(Relaxed),
                slot: s,
                stats: [
                    e.stats.immediate.load(Relaxed),
                    e.stats.waits.load(Relaxed),
                    e.stats.wait_total_us.load(Relaxed),
                    e.stats.wait_max_us.load(Relaxed),
                    e.stats.try_failures.load(Relaxed),
                    e.stats.timeouts.load(Relaxed),
                ],
                last_acquired: e.stats.last_acquired.load(Relaxed),
            });
        }
        out
    }
}

/// A lock's registry entry: its name (or only its namespace's, for a (namespace, id)
/// pair), the role that last used it, and the holder the entry recorded.
pub struct Resolved {
    pub name: String,
    pub role: u32,
    pub namespace_only: bool,
    pub held_by: i32,
    pub held_since: i64,
    /// the lease end recorded by backend `lease_pid` for its hold (0: none)
    pub lease_pid: i32,
    pub lease_expires: i64,
}

pub struct Snap {
    pub kind: Kind,
    pub key: i64,
    pub name: String,
    pub truncated: bool,
    pub role: u32,
    pub held_by: i32,
    pub held_since: i64,
    pub slot: i32,
    /// immediate, waits, wait_total_us, wait_max_us, try_failures, timeouts
    pub stats: [u64; 6],
    pub last_acquired: i64,
}

impl Registry {
    /// Zero every entry's statistics (named_lock_stats_reset).
    pub fn reset_stats(&self) {
        let _g = self.lock(false);
        for s in 0..self.capacity() as i32 {
            reset_stats(&self.slot(s).stats);
        }
    }
}

fn reset_stats(s: &Stats) {
    for c in [&s.immediate, &s.waits, &s.wait_total_us, &s.wait_max_us, &s.try_failures, &s.timeouts] {
        c.store(0, Relaxed);
    }
    s.last_acquired.store(0, Relaxed);
}

/// Ask the CPU to start loading the cache line at `p` (a hint: it never faults).
#[inline(always)]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 does not access memory architecturally and cannot fault.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use super::remember::{Label, Remembered};
    use super::*;

    /// A registry of `capacity` names in this backend's own memory (no other backend
    /// sees it), laid out as in shared memory: its evictions and slot reuse are this
    /// test's alone.
    fn private_registry(capacity: usize) -> (Vec<u64>, Registry) {
        let mut mem = vec![0u64; shmem_size(capacity) / 8 + 1];
        // SAFETY: 8-aligned, large enough, not shared with anyone.
        let reg = unsafe { Registry::init(mem.as_mut_ptr().cast(), capacity, pg_sys::LWLockNewTrancheId()) };
        (mem, reg)
    }

    fn name_key(i: i64) -> RegKey {
        RegKey { kind: Kind::Bigint, key: i, check: i as u64 }
    }

    /// Issue 15, item 6: the stamp a backend keeps with a slot must be the generation
    /// read before the lookup that found the slot. Here an eviction pass frees the
    /// slot and another name takes it after `remember` returned and before the caller
    /// stamps it; the old code stamped with the generation read then (`generation()`),
    /// which validates the stale slot: the backend would have trusted a slot that now
    /// holds another name, and overwritten its role, holder and statistics.
    #[pg_test]
    fn a_slot_is_stamped_with_the_generation_before_its_lookup() {
        let (_mem, reg) = private_registry(16);
        let Remembered::Slot(slot, stamp) = reg.remember(name_key(1), &Label::Name("victim".into()), None, 1, None) else {
            panic!("not stored")
        };
        // Newer names fill the registry: the victim (used at t = 1) is the oldest, so the
        // first eviction pass frees its slot, and the inserts after it take the slot.
        for i in 2..=40 {
            let name = format!("other-{i}");
            reg.remember(name_key(i), &Label::Name(name.as_str().into()), None, 1000 + i, None);
        }
        let now_in_slot = reg.snapshot().into_iter().find(|e| e.slot == slot).map(|e| e.name);
        assert!(now_in_slot.as_deref().is_some_and(|n| n != "victim"), "slot {slot} holds {now_in_slot:?}");
        // the stamp read before the lookup rejects the slot ...
        assert_eq!(reg.remembered(Some((slot, stamp)), 2000), None);
        // ... where a stamp read after the eviction (the old code's) would accept it
        assert_eq!(reg.remembered(Some((slot, reg.generation())), 2000), Some(slot));
    }

    /// An eviction pass bumps the generation before it reads which locks are in use, so
    /// that a lock granted after that read is noticed by its caller (`lock::after_grant`).
    #[pg_test]
    fn an_eviction_pass_bumps_the_generation_before_and_after() {
        let (_mem, reg) = private_registry(16);
        for i in 1..=16 {
            let name = format!("n-{i}");
            reg.remember(name_key(i), &Label::Name(name.as_str().into()), None, i, None);
        }
        let before = reg.generation();
        reg.evict();
        assert_eq!(reg.generation(), before + 2);
        assert_eq!(reg.used(), 12, "a quarter of the names evicted");
    }

    /// A registry whose memory is not ours is refused, not trusted (and not an ERROR:
    /// locking must go on without it).
    #[pg_test]
    fn attach_refuses_memory_that_is_not_a_registry() {
        let mut mem = vec![0u64; 64];
        // SAFETY: valid for reads of a Header.
        assert!(unsafe { Registry::attach(mem.as_mut_ptr().cast()) }.is_none());
    }
}
