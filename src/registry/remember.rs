//! Registering a name: `remember` finds the name's entry or inserts one (evicting when
//! the registry is full), under the locking rules of the registry's module doc; a key
//! another name already owns, or a full registry, is counted and warned about.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use super::layout::NAME_BYTES;
use super::{prefetch, reset_stats, Kind, RegKey, Registry, NO_SLOT};
use crate::monitor::privacy::{may_see, HIDDEN};
use crate::pg::backend::BackendLocal;
use crate::pg::encoding::for_message;
use rustc_hash::FxBuildHasher as FxBuild;

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

impl Registry {
    /// Remember `label` for `rk`, evicting when full, and mark it used at `now`. `hint` is
    /// a (slot, generation) the caller remembered for this name: still valid if no entry
    /// was removed since.
    pub fn remember(&self, rk: RegKey, label: &Label, hint: Option<(i32, u64)>, now: i64, grant: Option<&Grant>) -> Remembered {
        if let Some(slot) = self.remembered(hint, now) {
            return Remembered::Slot(slot, hint.map_or(0, |(_, g)| g));
        }
        // Read before the lookup: the slot found is valid under this stamp (the registry's module doc).
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
        let other = if may_see(role) { other } else { HIDDEN };
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
                e.lease_expires.store(0, Relaxed);
                e.lease_pid.store(0, Relaxed);
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
}

/// At most NAME_BYTES + 4 bytes of `s`, cut at a character boundary: when it cuts, at
/// least NAME_BYTES + 1 bytes are left (a character is at most 4 bytes), so a label
/// built from cut halves is still longer than `cut` keeps, and `cut` marks it, with the
/// same first NAME_BYTES bytes as the label of the whole halves.
fn head(s: &str) -> &str {
    crate::name::prefix(s, NAME_BYTES + 4)
}

/// `label` cut to NAME_BYTES at a character boundary, and whether it was cut.
fn cut(label: &str) -> (&str, bool) {
    let stored = crate::name::prefix(label, NAME_BYTES);
    (stored, stored.len() < label.len())
}

#[cfg(test)]
mod unit {
    use super::*;

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
