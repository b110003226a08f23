//! The registry's shared-memory layout (see "Where it lives" in the registry's doc): the
//! header, the two halves of a slot, and the size of the whole.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};

use pgrx::pg_sys;

/// Bytes of a name kept in shared memory; longer names are still hashed whole and are
/// stored cut at a character boundary, marked truncated. Chosen so that an `Entry` is
/// exactly four cache lines: entries then start on a line boundary, and the fields every
/// lock call touches (holder, `last_acquired`, `immediate`) share its first line.
pub const NAME_BYTES: usize = 168;
pub(super) const MAGIC: u32 = 0x504e_4c33; // "PNL3"
/// In the order the hot path needs them: every grant updates `last_acquired` and
/// `immediate` or the three wait fields, which with the holder fields before them fill
/// the entry's first cache line; try failures and timeouts go to the second.
#[repr(C)]
pub struct Stats {
    pub last_acquired: AtomicI64,
    pub immediate: AtomicU64,
    pub waits: AtomicU64,
    pub wait_total_us: AtomicU64,
    pub wait_max_us: AtomicU64,
    pub try_failures: AtomicU64,
    pub timeouts: AtomicU64,
}

/// What lookups and eviction read of a slot (see "Where it lives" in the registry's doc).
#[repr(C)]
pub(super) struct Meta {
    // identity: written only under the exclusive lock
    pub(super) kind: u8,  // 0 = free
    pub(super) next: i32, // bucket chain, or free list
    pub(super) key: i64,
    pub(super) check: u64,
    // the LRU position, an atomic (see the locking rules)
    pub(super) last_used: AtomicI64,
}

/// The rest of a slot: the stored name, the holder and the statistics.
#[repr(C)]
pub struct Entry {
    // identity: written only under the exclusive lock
    pub(super) truncated: bool,
    // atomics, see the locking rules
    /// whether the last grant of this lock came after a wait (a contention hint)
    pub(super) contended: AtomicBool,
    // identity
    pub(super) name_len: u16,
    // atomics
    pub(super) role: AtomicU32,
    pub(super) held_by: AtomicI32,
    /// the backend whose lease `lease_expires` is (it fills what was padding)
    pub(super) lease_pid: AtomicI32,
    pub(super) held_since: AtomicI64,
    pub stats: Stats,
    /// when the holder's lease ends (0: no lease; see `lock::lease`), for the view
    pub(super) lease_expires: AtomicI64,
    pub(super) name: [u8; NAME_BYTES],
}

impl Entry {
    /// The role that last used this name (for the privacy rule).
    pub fn role(&self) -> u32 {
        self.role.load(Relaxed)
    }
}

#[repr(C)]
pub struct Header {
    pub(super) lock: pg_sys::LWLock,
    pub(super) magic: u32,
    pub(super) tranche_id: i32,
    pub(super) capacity: u32,
    pub(super) nbuckets: u32,
    /// where the entries and the buckets start, from the header (fixed at init: the hot
    /// path reads them instead of recomputing the layout)
    pub(super) entries_at: usize,
    pub(super) buckets_at: usize,
    pub(super) used: AtomicU32,
    pub(super) free_head: i32,
    /// where the next eviction scan starts, going up (see `evict`)
    pub(super) hand: u32,
    pub(super) generation: AtomicU64,
    pub not_stored: AtomicU64,
    pub evictions: AtomicU64,
    pub collisions: AtomicU64,
}

pub(super) fn align(n: usize) -> usize {
    (n + 63) & !63
}

/// At most a quarter full: a lookup of a new name (the common miss) then rarely finds a
/// chain to walk, and each link walked is a cache miss.
pub(super) fn nbuckets(capacity: usize) -> usize {
    (capacity * 4).next_power_of_two()
}

/// Shared memory needed for `capacity` names.
pub fn shmem_size(capacity: usize) -> usize {
    align(size_of::<Header>())
        + align(capacity * size_of::<Meta>())
        + align(capacity * size_of::<Entry>())
        + nbuckets(capacity) * size_of::<i32>()
}

#[cfg(test)]
mod unit {
    use super::*;

    /// README states the per-name memory cost; keep it true.
    #[test]
    fn entry_size_is_documented() {
        assert_eq!(size_of::<Meta>() + size_of::<Entry>(), 288);
        assert_eq!(size_of::<Meta>(), 32);
        let per_name = shmem_size(10_000) as f64 / 10_000.0;
        assert!((310.0..320.0).contains(&per_name), "{per_name}");
    }

    /// The hot fields share the entry's first cache line, and every entry starts one.
    #[test]
    fn hot_fields_share_the_first_line() {
        assert_eq!(size_of::<Entry>(), 256);
        assert!(std::mem::offset_of!(Entry, stats) + std::mem::offset_of!(Stats, wait_max_us) + 8 <= 64);
        assert_eq!((align(size_of::<Header>()) + align(10_000 * size_of::<Meta>())) % 64, 0);
    }
}
