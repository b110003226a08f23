//! Named lock operations: resolve the arguments to lock keys and registry identities,
//! remember the names, take or release the locks (through `wait`), and keep the
//! per-name holder and statistics. The SQL functions in `api` call one function here.

use std::borrow::Cow;
use std::sync::atomic::Ordering::Relaxed;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error;
use crate::guc;
use crate::name::memo;
use crate::name::validate::{require_lockable, require_non_null};
use crate::pg::backend::coarse_now;
use crate::pg::lockmgr::{self, Key, Mode, Scope};
use crate::pg::text::TextArray;
use crate::registry::remember::{Grant, Label, Remembered};
use crate::registry::shmem;
use crate::registry::{pair_key, Kind, RegKey, Registry};
use wait::{Event, Wait};

pub mod cap;
pub mod fence;
pub mod lease;
pub mod wait;

/// A registry slot, with the registry generation it was found under (its stamp; see the
/// registry's locking rules).
type Slot = (i32, u64);

/// What one call locks, and under which name the registry remembers it.
pub struct Target<'a> {
    pub key: Key,
    reg: RegKey,
    label: Label<'a>,
    /// registry slot remembered for this name by this backend, with its generation
    hint: Option<(i32, u64)>,
    /// the name memo's fingerprint of a bigint name (for `memo::set_slot`)
    fp: u64,
}

impl<'a> Target<'a> {
    /// `lock_named(name)`: the bigint key of the name.
    pub fn named(name: Option<&'a str>) -> Self {
        let n = require_lockable(name, "name");
        let memo = memo::lookup(n);
        let h = memo.hash;
        if memo.slot.is_none() {
            // Likely a name new to the registry too: its insert reads this bucket first.
            if let Some(reg) = shmem::get() {
                reg.prefetch_bucket(Kind::Bigint, h.key64());
            }
        }
        Target {
            key: Key::Int64(h.key64()),
            reg: RegKey { kind: Kind::Bigint, key: h.key64(), check: h.check64() },
            label: Label::Name(Cow::Borrowed(n)),
            hint: memo.slot,
            fp: memo.fp,
        }
    }

    /// `lock_pair(namespace, name)`: (key32(namespace), key32(name)), shown as "namespace:name".
    pub fn pair(namespace: Option<&'a str>, name: Option<&'a str>) -> Self {
        let ns = require_lockable(namespace, "namespace");
        let n = require_lockable(name, "name");
        let (hns, hn) = (memo::hash(ns), memo::hash(n));
        Target {
            key: Key::Pair(hns.key32(), hn.key32()),
            reg: RegKey {
                kind: Kind::Pair,
                key: pair_key(hns.key32(), hn.key32()),
                check: ((hns.check32() as u64) << 32) | hn.check32() as u64,
            },
            label: Label::Pair(Cow::Borrowed(ns), Cow::Borrowed(n)),
            hint: None,
            fp: 0,
        }
    }

    /// `lock_pair(namespace, id)`: (key32(namespace), id); the registry remembers the
    /// namespace and shows "namespace:id".
    pub fn pair_id(namespace: Option<&'a str>, id: Option<i32>) -> Self {
        let ns = require_lockable(namespace, "namespace");
        let id = require_non_null(id, "id");
        let h = memo::hash(ns);
        Target {
            key: Key::Pair(h.key32(), id),
            reg: RegKey { kind: Kind::Namespace, key: h.key32() as i64, check: h.check32() as u64 },
            label: Label::Name(Cow::Borrowed(ns)),
            hint: None,
            fp: 0,
        }
    }

    /// Remember the name, used at `now`; the registry slot when it is stored under this
    /// name, with its stamp.
    #[inline]
    pub fn remember(&self, reg: Option<Registry>, now: i64) -> Option<Slot> {
        self.remember_with(reg?, now, None).map(|(slot, _)| slot)
    }

    /// `remember`, recording `grant` in the entry if the name is new to the registry;
    /// and whether it did (else the caller records the grant itself).
    #[inline]
    fn remember_with(&self, reg: Registry, now: i64, grant: Option<&Grant>) -> Option<(Slot, bool)> {
        match (reg.remembered(self.hint, now), self.hint) {
            (Some(s), Some((_, stamp))) => Some(((s, stamp), false)),
            _ => self.remember_anew(reg, now, grant),
        }
    }

    /// `remember_with` for a name without a valid remembered slot: kept out of line, so
    /// that the common case above stays small.
    #[inline(never)]
    fn remember_anew(&self, reg: Registry, now: i64, grant: Option<&Grant>) -> Option<(Slot, bool)> {
        let (slot, recorded) = match reg.remember(self.reg, &self.label, self.hint, now, grant) {
            Remembered::Slot(s, stamp) => ((s, stamp), false),
            Remembered::Recorded(s, stamp) => ((s, stamp), true),
            Remembered::Collision | Remembered::NotStored => return None,
        };
        // The memo keeps the stamp the registry read before its lookup, never a
        // generation read now: an eviction in between could have given the slot to
        // another name, and this backend would then trust it.
        if let (Kind::Bigint, Label::Name(n)) = (self.reg.kind, &self.label) {
            if self.hint != Some(slot) {
                memo::set_slot(n, self.fp, slot.0, slot.1);
            }
        }
        Some((slot, recorded))
    }

    /// The slot to record a grant in, after the grant: `slot` when no eviction pass has
    /// started since it was stamped (a pass that walked the lock lists before the grant
    /// bumped the generation before its walk), else the name looked up again, which
    /// waits for that pass and registers the name again if the pass evicted it.
    #[inline]
    fn after_grant(&self, reg: Registry, slot: Slot, now: i64) -> Option<Slot> {
        if reg.generation_after_grant() == slot.1 {
            return Some(slot);
        }
        self.remember_again(reg, now)
    }

    #[cold]
    #[inline(never)]
    fn remember_again(&self, reg: Registry, now: i64) -> Option<Slot> {
        self.remember_anew(reg, now, None).map(|(slot, _)| slot)
    }

    /// The name of a one-name target (None for pairs).
    pub fn label_name(&self) -> Option<&str> {
        match (&self.label, self.reg.kind) {
            (Label::Name(n), Kind::Bigint) => Some(n),
            _ => None,
        }
    }

    /// A bigint name this backend has no registry slot for: most likely new to the
    /// registry too (the name memo keeps the slot of every name it registered).
    fn new_to_backend(&self) -> bool {
        self.hint.is_none() && self.reg.kind == Kind::Bigint
    }
}

/// The targets of a `_many` call: every element a lockable name, sorted by key (the
/// global order that makes concurrent `_many` calls deadlock-free) and folded by key.
/// At most `error::MAX_NAMES_PER_CALL` elements (54000 past it, checked before anything
/// is allocated); the list is allocated fallibly (53200 when memory runs out, never an
/// abort) and borrows the names from the array, and the sort is in place.
pub fn many<'a>(names: Option<TextArray<'a>>) -> Vec<Target<'a>> {
    let names = require_non_null(names, "name array");
    let n = names.len();
    if n > error::MAX_NAMES_PER_CALL {
        error::too_many_names(n);
    }
    let mut targets: Vec<Target<'a>> = error::vec_with_capacity(n);
    targets.extend(names.iter().map(Target::named));
    targets.sort_unstable_by_key(|t| match t.key {
        Key::Int64(k) => k,
        Key::Pair(..) => unreachable!("_many locks bigint keys"),
    });
    targets.dedup_by_key(|t| t.key);
    targets
}

/// A per-call timeout: NULL and negative are errors; zero means "do not wait".
pub fn timeout(t: Option<Interval>) -> Wait {
    let us = require_non_null(t, "timeout").as_micros();
    if us < 0 {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "lock timeout must not be negative",
            "pg_named_locks",
        )
        .set_hint("Pass a positive interval, or 0 to try without waiting.")
        .report(PgLogLevel::ERROR);
    }
    match us {
        0 => Wait::No,
        us => Wait::Micros(us.min(i64::MAX as i128) as i64),
    }
}

/// Take every target's lock, all or nothing. The names are registered first, so waiters
/// already show by name while they wait. Returns whether the locks are held now.
#[inline(always)]
pub fn acquire(targets: &[Target], mode: Mode, scope: Scope, wait: Wait) -> bool {
    if mode == Mode::Exclusive && crate::fence::session_fenced() {
        return acquire_forgetting_tokens(targets, scope, wait);
    }
    acquire_plain(targets, mode, scope, wait)
}

/// `acquire` (exclusive) in a session that has taken fencing tokens: a key it did not
/// hold before the call is a new grant, which an old token of this session must not
/// stand for (read before the request, see `fence::forget_regranted`).
#[cold]
#[inline(never)]
fn acquire_forgetting_tokens(targets: &[Target], scope: Scope, wait: Wait) -> bool {
    let mut keys: Vec<Key> = error::vec_with_capacity(targets.len());
    keys.extend(targets.iter().map(|t| t.key));
    let mut before: Vec<bool> = error::vec_with_capacity(targets.len());
    before.extend(keys.iter().map(|&k| lockmgr::held_by_me(k, Mode::Exclusive)));
    let ok = acquire_plain(targets, Mode::Exclusive, scope, wait);
    if ok {
        fence::forget_regranted(&keys, &before);
    }
    ok
}

/// `acquire` without the fencing bookkeeping (the fenced functions do their own).
#[inline]
pub fn acquire_plain(targets: &[Target], mode: Mode, scope: Scope, wait: Wait) -> bool {
    if let [t] = targets {
        return acquire_one(t, mode, scope, wait);
    }
    let reg = shmem::get();
    let now = coarse_now();
    let mut slots: Vec<Option<Slot>> = error::vec_with_capacity(targets.len());
    slots.extend(targets.iter().map(|t| t.remember(reg, now)));
    let mut keys: Vec<Key> = error::vec_with_capacity(targets.len());
    keys.extend(targets.iter().map(|t| t.key));
    // one event per key at most
    let mut events: Vec<(usize, Event)> = error::vec_with_capacity(targets.len());
    let ok = wait::acquire_all(&keys, mode, scope, wait, &mut |i, ev| events.push((i, ev)));
    if let Some(reg) = reg {
        if ok {
            for (t, slot) in targets.iter().zip(slots.iter_mut()) {
                *slot = slot.and_then(|s| t.after_grant(reg, s, now));
            }
        }
        record(reg, targets, &slots, &events, ok, now);
    }
    ok
}

/// `acquire` for one target, without the per-call vectors: the hot path.
fn acquire_one(t: &Target, mode: Mode, scope: Scope, wait: Wait) -> bool {
    let reg = shmem::get();
    // One clock read per call, for the registry's LRU order and "last acquired" alike.
    let now = coarse_now();
    // SAFETY: a plain read of a backend-global.
    let me = unsafe { pg_sys::MyProcPid };
    let mut busy = false;
    if let Some(reg) = reg.filter(|_| t.new_to_backend()) {
        // A name new to this backend: try the lock first, and if it is granted at once,
        // register the name with the grant already in its new entry (one write of the
        // entry, no second visit). Only a name whose lock is busy must be registered
        // before the call waits, so that the wait shows under its name.
        match wait::try_one(t.key, mode, scope) {
            Some(event) => {
                let track = guc::track_stats();
                let grant = Grant { new_hold: event == Event::Immediate(true), pid: me, track };
                // No `after_grant` check: the entry is created (or found) under the
                // exclusive lock after the grant, and an eviction pass holds that lock
                // from before its walk, so a pass either ends before the entry exists or
                // walks after the grant and sees the lock.
                if let Some(((slot, _), false)) = t.remember_with(reg, now, Some(&grant)) {
                    record_one(reg, t.reg.kind, slot, event, true, now, track);
                }
                return true;
            }
            None => busy = true,
        }
    }
    let slot = t.remember(reg, now);
    let (ok, event) = if busy {
        wait::when_busy(t.key, mode, scope, wait)
    } else {
        let likely_busy = match (reg, slot) {
            (Some(reg), Some((slot, _))) => reg.likely_busy(slot, me),
            _ => false,
        };
        wait::acquire_one(t.key, mode, scope, wait, likely_busy)
    };
    if let (Some(reg), Some(slot)) = (reg, slot) {
        let slot = if ok { t.after_grant(reg, slot, now) } else { Some(slot) };
        if let Some((slot, _)) = slot {
            record_one(reg, t.reg.kind, slot, event, ok, now, guc::track_stats());
        }
    }
    ok
}

/// Holder and statistics updates, after the fact: a failed all-or-nothing call counts
/// only its try failure or timeout, not the holds it undid. `at`: when the call started.
fn record(reg: Registry, targets: &[Target], slots: &[Option<Slot>], events: &[(usize, Event)], ok: bool, at: i64) {
    let track = guc::track_stats();
    for &(i, ev) in events {
        if let Some((slot, _)) = slots[i] {
            record_one(reg, targets[i].reg.kind, slot, ev, ok, at, track);
        }
    }
}

fn record_one(reg: Registry, kind: Kind, slot: i32, ev: Event, ok: bool, at: i64, track: bool) {
    let granted = matches!(ev, Event::Immediate(_) | Event::Waited(_));
    if granted && !ok {
        return;
    }
    // `at` is the call's start; a grant after a wait happened later (and a call that
    // waited can afford another clock read).
    let at = if let Event::Waited(_) = ev { coarse_now() } else { at };
    // A (namespace, id) entry stands for many locks: no single holder to record.
    if matches!(ev, Event::Immediate(true) | Event::Waited(_)) && kind != Kind::Namespace {
        // SAFETY: a plain read of a backend-global.
        reg.note_granted(slot, unsafe { pg_sys::MyProcPid }, at, matches!(ev, Event::Waited(_)));
    }
    if !track {
        return;
    }
    let s = &reg.slot(slot).stats;
    match ev {
        // acquisitions = immediate + waits, summed when read: one atomic less here
        Event::Immediate(_) => {
            s.immediate.fetch_add(1, Relaxed);
            if s.last_acquired.load(Relaxed) != at {
                s.last_acquired.store(at, Relaxed);
            }
        }
        Event::Waited(us) => {
            s.waits.fetch_add(1, Relaxed);
            s.wait_total_us.fetch_add(us.max(0) as u64, Relaxed);
            // fetch_max is a compare-and-swap loop even when the maximum stands: test first
            if us.max(0) as u64 > s.wait_max_us.load(Relaxed) {
                s.wait_max_us.fetch_max(us.max(0) as u64, Relaxed);
            }
            s.last_acquired.store(at, Relaxed);
        }
        Event::Busy => {
            s.try_failures.fetch_add(1, Relaxed);
        }
        Event::TimedOut => {
            s.timeouts.fetch_add(1, Relaxed);
        }
    }
}

/// `unlock_named(name)`: release one session hold; false (with the lock manager's
/// WARNING) when not held. Only the key is needed, not a full `Target`, and nothing on
/// the way owns memory, so the release goes without pgrx's guard (`release_fast`).
pub fn release_named(name: Option<&str>, mode: Mode) -> bool {
    let key = Key::Int64(memo::lookup(require_lockable(name, "name")).hash.key64());
    let released = lockmgr::release_fast(key, mode);
    if released {
        cap::note_released(key, mode, Scope::Session);
        if mode == Mode::Exclusive {
            lease::note_released(key);
        }
    }
    released
}

/// Release one session hold of each target; the number released (a target not held
/// gets the lock manager's WARNING and does not count). Guarded: a pending cancel that
/// the WARNING raises unwinds through here and frees the targets.
pub fn release(targets: &[Target], mode: Mode) -> i32 {
    let mut n = 0;
    for t in targets {
        if lockmgr::release(t.key, mode) {
            cap::note_released(t.key, mode, Scope::Session);
            if mode == Mode::Exclusive {
                lease::note_released(t.key);
            }
            n += 1;
        }
    }
    n
}
