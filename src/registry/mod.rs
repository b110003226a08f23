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

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};

use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::name::memo::FxBuild;
use crate::pg::backend::BackendLocal;
use crate::pg::encoding::for_message;
use crate::pg::lockmgr::Key;

pub mod shmem;

/// Bytes of a name kept in shared memory; longer names are still hashed whole and are
/// stored cut at a character boundary, marked truncated. Chosen so that an `Entry` is
/// exactly four cache lines: entries then start on a line boundary, and the fields every
/// lock call touches (holder, `last_acquired`, `immediate`) share its first line.
pub const NAME_BYTES: usize = 168;
const MAGIC: u32 = 0x504e_4c33; // "PNL3"
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
    /// reserved: acquisitions are immediate + waits, summed when read
    pub acquisitions: AtomicU64,
}

/// What lookups and eviction read of a slot (see "Where it lives").
#[repr(C)]
struct Meta {
    // identity: written only under the exclusive lock
    kind: u8,  // 0 = free
    next: i32, // bucket chain, or free list
    key: i64,
    check: u64,
    // the LRU position, an atomic (see the locking rules)
    last_used: AtomicI64,
}

/// The rest of a slot: the stored name, the holder and the statistics.
#[repr(C)]
pub struct Entry {
    // identity: written only under the exclusive lock
    truncated: bool,
    // atomics, see the locking rules
    /// whether the last grant of this lock came after a wait (a contention hint)
    contended: AtomicBool,
    // identity
    name_len: u16,
    // atomics
    role: AtomicU32,
    held_by: AtomicI32,
    held_since: AtomicI64,
    pub stats: Stats,
    name: [u8; NAME_BYTES],
}

impl Entry {
    /// The role that last used this name (for the privacy rule).
    pub fn role(&self) -> u32 {
        self.role.load(Relaxed)
    }
}

#[repr(C)]
pub struct Header {
    lock: pg_sys::LWLock,
    magic: u32,
    tranche_id: i32,
    capacity: u32,
    nbuckets: u32,
    /// where the entries and the buckets start, from the header (fixed at init: the hot
    /// path reads them instead of recomputing the layout)
    entries_at: usize,
    buckets_at: usize,
    used: AtomicU32,
    free_head: i32,
    /// where the next eviction scan starts, going up (see `evict`)
    hand: u32,
    generation: AtomicU64,
    pub not_stored: AtomicU64,
    pub evictions: AtomicU64,
    pub collisions: AtomicU64,
}

fn align(n: usize) -> usize {
    (n + 63) & !63
}

/// At most a quarter full: a lookup of a new name (the common miss) then rarely finds a
/// chain to walk, and each link walked is a cache miss.
fn nbuckets(capacity: usize) -> usize {
    (capacity * 4).next_power_of_two()
}

/// Shared memory needed for `capacity` names.
pub fn shmem_size(capacity: usize) -> usize {
    align(size_of::<Header>())
        + align(capacity * size_of::<Meta>())
        + align(capacity * size_of::<Entry>())
        + nbuckets(capacity) * size_of::<i32>()
}

/// A handle on an attached registry.
#[derive(Clone, Copy)]
pub struct Registry {
    hdr: *mut Header,
}

/// The name a registry entry shows, rendered only when an entry is created.
pub enum Label<'a> {
    Name(Cow<'a, str>),
    /// shown as "namespace:name"
    Pair(Cow<'a, str>, Cow<'a, str>),
}

impl Label<'_> {
    /// The label as stored (at most a little over NAME_BYTES, then cut by `cut`): a
    /// pair's halves are cut first, so that two huge names never make a huge string.
    pub fn render(&self) -> Cow<'_, str> {
        match self {
            Label::Name(n) => Cow::Borrowed(n),
            Label::Pair(ns, n) => Cow::Owned(format!("{}:{}", head(ns), head(n))),
        }
    }
}

/// Result of registering a name.
pub enum Remembered {
    /// Stored (or already there); the slot for statistics and holder updates, and the
    /// registry generation read before the lookup that found it (the stamp under which
    /// a backend may trust the slot later).
    Slot(i32, u64),
    /// Stored just now, with the caller's grant already recorded in it (see `Grant`).
    Recorded(i32, u64),
    /// Another name already owns this key: reported, not merged.
    Collision,
    /// The registry is full and nothing could be evicted.
    NotStored,
}

/// A lock the caller was granted a moment ago, to record in the entry it is about to
/// create: written with the rest of the new entry, under the lock that inserts it and
/// before anyone else can reach it, instead of updated (an atomic add among others) in a
/// second visit. Names new to the registry are mostly names used once, so this is most
/// of their statistics work.
pub struct Grant {
    /// granted now (not re-entered): the holder is recorded
    pub new_hold: bool,
    pub pid: i32,
    /// pg_named_locks.track_stats
    pub track: bool,
}

/// (registry generation, slot of each name registered in it)
type SlotCache = (u64, Option<HashMap<RegKey, i32, FxBuild>>);

/// Slots of the names this backend registered, valid for one registry generation.
static CACHE: BackendLocal<SlotCache> = BackendLocal::new((0, None));
static WARNED_FULL: BackendLocal<bool> = BackendLocal::new(false);
static WARNED_COLLISION: BackendLocal<Option<HashSet<RegKey>>> = BackendLocal::new(None);

// The LWLock calls go without pgrx's FFI guard (a sigsetjmp each; two per registry
// visit): see `pg::unguarded` for why they cannot raise here.
use crate::pg::unguarded;

/// Holds the registry LWLock; releases it on drop, also when an ERROR unwinds.
struct Guard(*mut pg_sys::LWLock);

impl Guard {
    fn new(lock: *mut pg_sys::LWLock, exclusive: bool) -> Guard {
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

    /// Remember `label` for `rk`, evicting when full, and mark it used at `now`. `hint` is
    /// a (slot, generation) the caller remembered for this name: still valid if no entry
    /// was removed since.
    pub fn remember(&self, rk: RegKey, label: &Label, hint: Option<(i32, u64)>, now: i64, grant: Option<&Grant>) -> Remembered {
        if let Some(slot) = self.remembered(hint, now) {
            return Remembered::Slot(slot, hint.map_or(0, |(_, g)| g));
        }
        // Read before the lookup: the slot found is valid under this stamp (module doc).
        let generation = self.generation();
        // Names locked by bigint key carry their slot in the caller's name memo (`hint`);
        // the other kinds are remembered here.
        let memoised = rk.kind == Kind::Bigint;
        let cached = if memoised {
            None
        } else {
            CACHE.with(|(g, map)| {
                let map = map.get_or_insert_with(HashMap::default);
                if *g != generation {
                    *g = generation;
                    map.clear();
                }
                map.get(&rk).copied()
            })
        };
        if let Some(slot) = cached {
            self.touch(slot, now);
            return Remembered::Slot(slot, generation);
        }

        let label = label.render();
        let label: &str = &label;
        // A bigint name with no hint at all is new to this backend, and most likely to
        // the registry: go straight to the insert, which looks it up again under the
        // exclusive lock, instead of taking the lock twice.
        let found = if memoised && hint.is_none() {
            None
        } else {
            let _g = self.lock(false);
            self.find(rk.kind, rk.key).map(|s| (s, self.slot_check(s), self.stored_name(s).0, self.slot(s).role()))
        };
        let (slot, fresh) = match found {
            Some((slot, check, _, _)) if check == rk.check => (slot, false),
            Some((_, _, other, role)) => return self.collision(rk, label, &other, role),
            None => match self.insert(rk, label, now, grant) {
                Ok((slot, true)) if grant.is_some() => return Remembered::Recorded(slot, generation),
                Ok(found) => found,
                Err(Some((other, role))) => return self.collision(rk, label, &other, role),
                Err(None) => return self.not_stored(label),
            },
        };
        if !fresh {
            self.touch(slot, now);
        }
        CACHE.with(|(g, map)| {
            if !memoised && *g == generation {
                map.get_or_insert_with(HashMap::default).insert(rk, slot);
            }
        });
        Remembered::Slot(slot, generation)
    }

    /// Full, and nothing could be evicted: counted, and warned about once per session.
    #[cold]
    #[inline(never)]
    fn not_stored(&self, label: &str) -> Remembered {
        self.header().not_stored.fetch_add(1, Relaxed);
        if !WARNED_FULL.get() {
            WARNED_FULL.set(true);
            let label = for_message(cut(label).0);
            crate::error::warn(
                ErrorReport::new(
                    PgSqlErrorCode::ERRCODE_OUT_OF_MEMORY,
                    format!(
                        "pg_named_locks registry is full ({} names, all in use): lock name \"{label}\" is not remembered",
                        self.capacity()
                    ),
                    "pg_named_locks",
                )
                .set_detail(
                    "Locking is not affected; monitoring shows such locks by key only. This warning is shown once per session.",
                )
                .set_hint("Raise pg_named_locks.max_names (requires a restart)."),
                PgLogLevel::WARNING,
            );
        }
        Remembered::NotStored
    }

    fn slot_check(&self, slot: i32) -> u64 {
        // SAFETY: caller holds the registry lock.
        unsafe { (*self.meta(slot)).check }
    }

    /// `other` was last used by `role`: a caller who may not see that role's names gets
    /// the warning without the other name (a 32-bit pair key collision can be searched
    /// for offline, so the warning must not become a way to read names).
    #[cold]
    #[inline(never)]
    fn collision(&self, rk: RegKey, label: &str, other: &str, role: u32) -> Remembered {
        self.header().collisions.fetch_add(1, Relaxed);
        let other = if may_see(role) { other } else { crate::monitor::HIDDEN };
        let first = WARNED_COLLISION.with(|s| s.get_or_insert_with(HashSet::new).insert(rk));
        if first {
            let (label, other) = (for_message(cut(label).0), for_message(other));
            crate::error::warn(
                ErrorReport::new(
                    PgSqlErrorCode::ERRCODE_WARNING,
                    format!("lock name \"{label}\" has the same key as lock name \"{other}\""),
                    "pg_named_locks",
                )
                .set_detail(
                    "Both names map to one advisory lock key, so they lock the same lock. \
                     The registry keeps the first name and does not merge them.",
                )
                .set_hint("Rename one of the two locks."),
                PgLogLevel::WARNING,
            );
        }
        Remembered::Collision
    }

    /// `remember` of a name whose slot the caller remembered (`hint`, with the
    /// generation it is valid for), when it still is: the slot, touched. The common
    /// case of every repeated name, kept small enough to inline.
    #[inline]
    pub fn remembered(&self, hint: Option<(i32, u64)>, now: i64) -> Option<i32> {
        let (slot, g) = hint?;
        if g != self.generation() {
            return None;
        }
        self.touch(slot, now);
        Some(slot)
    }

    /// Mark a use: the LRU position and the role that last used the name (for privacy).
    #[inline]
    fn touch(&self, slot: i32, now: i64) {
        let e = self.slot(slot);
        let role = crate::pg::backend::current_user_id();
        // SAFETY: in bounds; last_used is an atomic.
        let last_used = unsafe { &(*self.meta(slot)).last_used };
        // Store only on change: a hot name touched by many backends would otherwise
        // bounce its cache line on every call.
        if last_used.load(Relaxed) != now {
            last_used.store(now, Relaxed);
        }
        if e.role.load(Relaxed) != role {
            e.role.store(role, Relaxed);
        }
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

    /// Insert a new entry, used at `now`: Ok((slot, true)), or Ok((slot, false)) if another
    /// backend inserted the name meanwhile (not touched). Err(Some((name, role))) if
    /// another name took the key meanwhile, Err(None) if full after trying to evict.
    fn insert(&self, rk: RegKey, label: &str, now: i64, grant: Option<&Grant>) -> Result<(i32, bool), Option<(String, u32)>> {
        for attempt in 0..2 {
            if attempt == 1 {
                self.evict();
            }
            let _g = self.lock(true);
            if let Some(s) = self.find(rk.kind, rk.key) {
                return if self.slot_check(s) == rk.check {
                    Ok((s, false))
                } else {
                    Err(Some((self.stored_name(s).0, self.slot(s).role())))
                };
            }
            // SAFETY: exclusive lock held: free list, buckets and identities are ours.
            unsafe {
                let h = &mut *self.hdr;
                let slot = h.free_head;
                if slot == NO_SLOT {
                    continue;
                }
                let m = &mut *self.meta(slot);
                let e = &mut *self.entry(slot);
                h.free_head = m.next;
                let (stored, truncated) = cut(label);
                m.kind = rk.kind as u8;
                m.key = rk.key;
                m.check = rk.check;
                m.last_used.store(now, Relaxed);
                e.role.store(crate::pg::backend::current_user_id(), Relaxed);
                e.truncated = truncated;
                e.name_len = stored.len() as u16;
                e.name[..stored.len()].copy_from_slice(stored.as_bytes());
                reset_stats(&e.stats);
                let (holder, since) = match grant {
                    Some(g) if g.new_hold && rk.kind != Kind::Namespace => (g.pid, now),
                    _ => (0, 0),
                };
                e.held_by.store(holder, Relaxed);
                e.held_since.store(since, Relaxed);
                e.contended.store(false, Relaxed);
                if let Some(Grant { track: true, .. }) = grant {
                    e.stats.immediate.store(1, Relaxed);
                    e.stats.last_acquired.store(now, Relaxed);
                }
                let b = self.bucket(self.bucket_of(rk.kind, rk.key));
                m.next = *b;
                *b = slot;
                // Only exclusive holders change it: no locked instruction needed (one
                // would stall here until the stores to this cold slot are done).
                h.used.store(h.used.load(Relaxed) + 1, Relaxed);
                self.prefetch_slot(h.free_head);
                return Ok((slot, true));
            }
        }
        Err(None)
    }

    /// Start loading the cache lines that inserting into `slot` will write. Inserts take
    /// slots from the head of the free list, and under a stream of new names nearly every
    /// call inserts one: fetched now, while this backend goes on with its lock, the next
    /// insert (by any backend) does not wait for them.
    #[inline]
    fn prefetch_slot(&self, slot: i32) {
        if slot != NO_SLOT {
            let e = self.entry(slot).cast::<u8>();
            prefetch(self.meta(slot).cast());
            // SAFETY: in bounds of the entry (a 288-byte Entry spans at most 5 lines).
            unsafe {
                prefetch(e);
                prefetch(e.add(64));
                prefetch(e.add(128));
            }
        }
    }

    /// Start loading the bucket a lookup of this key reads (done as soon as a new name's
    /// key is known, so that the load overlaps the work before the registry visit).
    #[inline]
    pub fn prefetch_bucket(&self, kind: Kind, key: i64) {
        prefetch(self.bucket(self.bucket_of(kind, key)).cast());
    }

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
    fn evict(&self) {
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
                    e.stats.acquisitions.load(Relaxed),
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
    /// acquisitions, immediate, waits, wait_total_us, wait_max_us, try_failures, timeouts
    pub stats: [u64; 7],
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
    for c in [&s.acquisitions, &s.immediate, &s.waits, &s.wait_total_us, &s.wait_max_us, &s.try_failures, &s.timeouts] {
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

/// At most NAME_BYTES + 4 bytes of `s`, cut at a character boundary: when it cuts, at
/// least NAME_BYTES + 1 bytes are left (a character is at most 4 bytes), so a label
/// built from cut halves is still longer than `cut` keeps, and `cut` marks it, with the
/// same first NAME_BYTES bytes as the label of the whole halves.
fn head(s: &str) -> &str {
    let mut end = s.len().min(NAME_BYTES + 4);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `label` cut to NAME_BYTES at a character boundary, and whether it was cut.
fn cut(label: &str) -> (&str, bool) {
    if label.len() <= NAME_BYTES {
        return (label, false);
    }
    let mut end = NAME_BYTES;
    while !label.is_char_boundary(end) {
        end -= 1;
    }
    (&label[..end], true)
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

/// Whether the current user may see a name last used by `role`: the rule of
/// pg_stat_activity's query text (superuser, pg_read_all_stats, or privileges of the role).
pub fn may_see(role: u32) -> bool {
    // SAFETY: catalog lookups through the syscache, valid inside a transaction.
    unsafe {
        let me = pg_sys::GetUserId();
        role == me.to_u32()
            || pg_sys::has_privs_of_role(me, pg_sys::Oid::from(pg_sys::ROLE_PG_READ_ALL_STATS))
            || (role != 0 && pg_sys::has_privs_of_role(me, pg_sys::Oid::from(role)))
    }
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

    /// A pair's label is built from halves cut short (two huge names never make a huge
    /// string), and stores exactly what the whole label would.
    #[test]
    fn pair_labels_store_what_the_whole_label_would() {
        let long_ns = format!("xx{}", "😀".repeat(60));
        let long_n = "ü".repeat(200);
        for (ns, n) in [(long_ns.as_str(), "x"), ("ns", long_n.as_str()), (long_ns.as_str(), long_n.as_str()), ("ns", "x")] {
            let whole = format!("{ns}:{n}");
            let label = Label::Pair(Cow::Borrowed(ns), Cow::Borrowed(n));
            assert_eq!(cut(&label.render()), cut(&whole), "{ns}:{n}");
        }
    }

    #[test]
    fn cut_keeps_char_boundaries() {
        let long = "ü".repeat(150); // 300 bytes
        let (stored, truncated) = cut(&long);
        assert!(truncated);
        assert_eq!(stored.len(), NAME_BYTES);
        let shifted = format!("x{long}"); // the boundary falls mid-character
        let (stored, truncated) = cut(&shifted);
        assert!(truncated);
        assert_eq!(stored.len(), NAME_BYTES - 1);
        assert_eq!(cut("short"), ("short", false));
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
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
