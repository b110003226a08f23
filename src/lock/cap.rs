//! The per-session cap: `pg_named_locks.max_locks_per_session` distinct named locks.
//!
//! Checked before a named lock call requests a lock, so one runaway session fails with
//! 53400 instead of exhausting the shared lock table (53200) for everybody. The named
//! lock functions keep a backend-local count of the holds they take and give back, per
//! key, mode and level (transaction holds are dropped when the transaction ends), in a
//! table of the keys held, so the number of distinct keys is its size, known without
//! touching shared memory. Holds that vanish behind our back (pg_advisory_unlock_all(),
//! a rolled-back subtransaction) can only make that number too high; before refusing, the entries are checked against the
//! backend's own lock table and stale ones dropped, so a refusal is always exact.

use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::flatmap::FlatMap;
use crate::guc;
use crate::pg::backend::BackendLocal;
use crate::pg::lockmgr::{self, Key, Mode, Scope};

/// Holds per key held: [session exclusive, session shared, xact exclusive, xact shared].
/// A key leaves when its last hold is given back, so `len()` is the number of distinct
/// keys held (as far as the named functions know; see `check_cap`).
type Counts = [u32; 4];

/// Sessions mostly hold a handful of named locks at a time: up to `FEW` keys live in a
/// short inline list, where a lock and its unlock cost a compare or two, not a hash
/// probe, an insert and a backward-shift removal. More keys spill into a `FlatMap`. A
/// key is in one of the two, never both.
const FEW: usize = 8;

struct Holds {
    few: [(Key, Counts); FEW],
    n: usize,
    many: FlatMap<Key, Counts>,
}

impl Holds {
    const fn new() -> Self {
        Holds { few: [(Key::Int64(0), [0; 4]); FEW], n: 0, many: FlatMap::new() }
    }

    fn len(&self) -> usize {
        self.n + self.many.len()
    }

    #[inline]
    fn position(&self, key: Key) -> Option<usize> {
        self.few[..self.n].iter().position(|(k, _)| *k == key)
    }

    #[inline]
    fn contains(&self, key: Key) -> bool {
        self.position(key).is_some() || (!self.many.is_empty() && self.many.get(hash(key), |&k| k == key).is_some())
    }

    #[inline]
    fn add(&mut self, key: Key, i: usize) {
        if let Some(p) = self.position(key) {
            self.few[p].1[i] += 1;
        } else if self.many.is_empty() && self.n < FEW {
            self.push(key, i);
        } else {
            self.add_spilled(key, i);
        }
    }

    #[inline]
    fn push(&mut self, key: Key, i: usize) {
        self.few[self.n] = (key, one(i));
        self.n += 1;
    }

    /// Remove entry `p` of the inline list (the last entry takes its place).
    #[inline]
    fn take_out(&mut self, p: usize) {
        self.n -= 1;
        self.few[p] = self.few[self.n];
    }

    /// `add` of a key not in the list while the map is in use (or the list full).
    #[inline(never)]
    fn add_spilled(&mut self, key: Key, i: usize) {
        if let Some(c) = self.many.get_mut(hash(key), |&k| k == key) {
            c[i] += 1;
        } else if self.n < FEW {
            self.push(key, i);
        } else {
            self.many.insert_new(hash(key), key, one(i));
        }
    }

    /// One hold of `key` at index `i` given back; the key leaves when none is left.
    #[inline]
    fn sub(&mut self, key: Key, i: usize) {
        if let Some(p) = self.position(key) {
            let c = &mut self.few[p].1;
            c[i] = c[i].saturating_sub(1);
            if c.iter().all(|&x| x == 0) {
                self.take_out(p);
            }
        } else if !self.many.is_empty() {
            self.many.update_or_remove(
                hash(key),
                |&k| k == key,
                |c| {
                    c[i] = c[i].saturating_sub(1);
                    c.iter().any(|&n| n > 0)
                },
            );
        }
    }

    /// Keep only the keys for which `keep` holds (it may change their counts).
    fn retain(&mut self, mut keep: impl FnMut(&Key, &mut Counts) -> bool) {
        let mut p = 0;
        while p < self.n {
            let (k, c) = &mut self.few[p];
            if keep(k, c) {
                p += 1;
            } else {
                self.take_out(p);
            }
        }
        self.many.retain(keep);
    }

    fn keys(&self) -> Vec<Key> {
        self.few[..self.n].iter().map(|(k, _)| *k).chain(self.many.keys().copied()).collect()
    }

    fn remove(&mut self, key: Key) {
        if let Some(p) = self.position(key) {
            self.take_out(p);
        } else {
            self.many.remove(hash(key), |&k| k == key);
        }
    }
}

/// Multiplicative hashing: the product's top bits (hashbrown's control bytes) mix every
/// input bit, its low bits (the bucket index) those of the key's low half, which is
/// md5-derived or a distinct id. The two key spaces use
/// different multipliers so that a pair and a bigint with the same 64 bits rarely share
/// a hash (equal hashes are told apart by comparing keys anyway).
#[inline]
fn hash(key: Key) -> u64 {
    match key {
        Key::Int64(k) => (k as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        Key::Pair(a, b) => (((a as u32 as u64) << 32) | b as u32 as u64).wrapping_mul(0xc2b2_ae3d_27d4_eb4f),
    }
}

fn one(i: usize) -> Counts {
    let mut c = [0; 4];
    c[i] = 1;
    c
}

static HOLDS: BackendLocal<Holds> = BackendLocal::new(Holds::new());

/// Whether any transaction hold is recorded (so commits of sessions without any skip
/// the scan).
static XACT_HOLDS: BackendLocal<bool> = BackendLocal::new(false);

fn idx(mode: Mode, scope: Scope) -> usize {
    match (scope, mode) {
        (Scope::Session, Mode::Exclusive) => 0,
        (Scope::Session, Mode::Shared) => 1,
        (Scope::Xact, Mode::Exclusive) => 2,
        (Scope::Xact, Mode::Shared) => 3,
    }
}

pub fn note_acquired(key: Key, mode: Mode, scope: Scope) {
    if scope == Scope::Xact {
        XACT_HOLDS.set(true);
    }
    HOLDS.with(|h| h.add(key, idx(mode, scope)));
}

/// One hold given back (unlock, or the undo of a failed all-or-nothing call).
pub fn note_released(key: Key, mode: Mode, scope: Scope) {
    HOLDS.with(|h| h.sub(key, idx(mode, scope)));
}

/// Transaction holds end with the transaction (registered in _PG_init). Runs for every
/// transaction event of every transaction in a backend that loaded the library, most of
/// which recorded no transaction hold: that case is one flag test, without the cost of
/// pgrx's guard (which `forget_xact_holds` keeps for the real work).
///
/// # Safety
/// For PostgreSQL to call, as a transaction callback (`RegisterXactCallback`).
pub unsafe extern "C-unwind" fn on_xact_end(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    if XACT_HOLDS.get()
        && matches!(
            event,
            pg_sys::XactEvent::XACT_EVENT_COMMIT | pg_sys::XactEvent::XACT_EVENT_ABORT | pg_sys::XactEvent::XACT_EVENT_PREPARE
        )
    {
        forget_xact_holds();
    }
}

#[pg_guard]
extern "C-unwind" fn forget_xact_holds() {
    XACT_HOLDS.set(false);
    HOLDS.with(|h| {
        h.retain(|_, c| {
            c[2] = 0;
            c[3] = 0;
            c[0] + c[1] > 0
        });
    });
}

/// Ok when taking `key` keeps this session within the cap.
// The Err is pgrx's ErrorReport, raised at once by the caller; boxing it (what
// result_large_err asks) would add an allocation to that path and change this
// always-inlined check on the lock path for nothing.
#[allow(clippy::result_large_err)]
#[inline(always)]
pub fn check_cap(key: Key) -> Result<(), ErrorReport> {
    let cap = guc::max_locks_per_session();
    if cap <= 0 || HOLDS.with(|h| h.len()) < cap as usize {
        return Ok(());
    }
    check_cap_at(key, cap as usize)
}

/// `check_cap` for a session at its cap (as far as the table knows).
#[allow(clippy::result_large_err)] // as for check_cap
#[cold]
fn check_cap_at(key: Key, cap: usize) -> Result<(), ErrorReport> {
    if HOLDS.with(|h| h.contains(key)) {
        return Ok(());
    }
    // Drop the entries the lock table no longer backs, then decide on the exact number.
    // (The lock-table lookups run outside the table's closure: nothing can unwind out of
    // it half-changed.)
    let keys: Vec<Key> = HOLDS.with(|h| h.keys());
    let stale: Vec<Key> =
        keys.into_iter().filter(|&k| !(lockmgr::held_by_me(k, Mode::Exclusive) || lockmgr::held_by_me(k, Mode::Shared))).collect();
    HOLDS.with(|h| {
        for k in stale {
            h.remove(k);
        }
    });
    if HOLDS.with(|h| h.len()) < cap {
        return Ok(());
    }
    Err(ErrorReport::new(
        PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
        format!("this session already holds {cap} named locks, the most pg_named_locks.max_locks_per_session allows"),
        "pg_named_locks",
    )
    .set_detail("The lock was not requested, so the shared lock table was not touched.")
    .set_hint("Release locks you no longer need (unlock_named, or end the transaction for xact_ locks), or ask a superuser to raise pg_named_locks.max_locks_per_session (0 = no cap)."))
}

#[cfg(test)]
mod unit {
    use super::{Holds, FEW};
    use crate::pg::lockmgr::Key;
    use std::collections::HashMap;

    /// Random adds and subs against a plain map: the same keys and counts, whether they
    /// sit in the inline list or the map, and across both.
    #[test]
    fn holds_match_a_plain_map() {
        let mut h = Holds::new();
        let mut model: HashMap<Key, [u32; 4]> = HashMap::new();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for step in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // phases with few and with many keys in play
            let span = if (step / 5000) % 2 == 0 { 6 } else { 40 };
            let key = match x % 3 {
                0 => Key::Pair((x >> 8) as i32 % 3, ((x >> 16) % span) as i32),
                _ => Key::Int64(((x >> 16) % span) as i64),
            };
            let i = ((x >> 32) % 4) as usize;
            if (x >> 40).is_multiple_of(2) {
                h.add(key, i);
                model.entry(key).or_insert([0; 4])[i] += 1;
            } else {
                h.sub(key, i);
                if let Some(c) = model.get_mut(&key) {
                    c[i] = c[i].saturating_sub(1);
                    if c.iter().all(|&n| n == 0) {
                        model.remove(&key);
                    }
                }
            }
            if step % 997 == 0 {
                h.retain(|k, c| {
                    c[2] = 0;
                    c[3] = 0;
                    let keep = c[0] + c[1] > 0;
                    assert_eq!(keep, model.get(k).is_some_and(|m| m[0] + m[1] > 0));
                    keep
                });
                model.retain(|_, c| {
                    c[2] = 0;
                    c[3] = 0;
                    c[0] + c[1] > 0
                });
            }
            if step % 4999 == 0 {
                if let Some(&k) = model.keys().next() {
                    h.remove(k);
                    model.remove(&k);
                }
            }
            assert_eq!(h.len(), model.len());
            assert!(h.n <= FEW);
        }
        let mut keys = h.keys();
        keys.sort_by_key(|k| format!("{k:?}"));
        let mut want: Vec<Key> = model.keys().copied().collect();
        want.sort_by_key(|k| format!("{k:?}"));
        assert_eq!(keys, want);
        for (k, c) in &model {
            assert!(h.contains(*k));
            let got = h.few[..h.n]
                .iter()
                .find(|(x, _)| x == k)
                .map(|(_, c)| *c)
                .or_else(|| h.many.get(super::hash(*k), |x| x == k).copied());
            assert_eq!(got, Some(*c));
        }
    }
}
