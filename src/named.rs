//! A named lock operation: resolve the arguments to a lock key and a registry identity,
//! remember the name, take or release the lock, record who holds it. The SQL functions in
//! `api.rs` call exactly one function of this module.

use std::borrow::Cow;

use pgrx::pg_sys;

use crate::keys::NameHash;
use crate::lockmgr::{self, Acquired, Key, Mode, Scope};
use crate::names::{require_lockable, require_non_null};
use crate::registry::{pair_key, Kind, RegKey, Remembered};
use crate::shmem;

/// What one call locks, and under which name the registry remembers it.
pub struct Target<'a> {
    pub key: Key,
    reg: RegKey,
    label: Cow<'a, str>,
}

impl<'a> Target<'a> {
    /// `lock_named(name)`: the bigint key of the name.
    pub fn named(name: Option<&'a str>) -> Self {
        let n = require_lockable(name, "name");
        let h = NameHash::of(n.as_bytes());
        Target {
            key: Key::Int64(h.key64()),
            reg: RegKey { kind: Kind::Bigint, key: h.key64(), check: h.check64() },
            label: Cow::Borrowed(n),
        }
    }

    /// `lock_pair(namespace, name)`: (key32(namespace), key32(name)), shown as "namespace:name".
    pub fn pair(namespace: Option<&'a str>, name: Option<&'a str>) -> Self {
        let ns = require_lockable(namespace, "namespace");
        let n = require_lockable(name, "name");
        let (hns, hn) = (NameHash::of(ns.as_bytes()), NameHash::of(n.as_bytes()));
        Target {
            key: Key::Pair(hns.key32(), hn.key32()),
            reg: RegKey {
                kind: Kind::Pair,
                key: pair_key(hns.key32(), hn.key32()),
                check: ((hns.check32() as u64) << 32) | hn.check32() as u64,
            },
            label: Cow::Owned(format!("{ns}:{n}")),
        }
    }

    /// `lock_pair(namespace, id)`: (key32(namespace), id); the registry remembers the
    /// namespace and shows "namespace:id".
    pub fn pair_id(namespace: Option<&'a str>, id: Option<i32>) -> Self {
        let ns = require_lockable(namespace, "namespace");
        let id = require_non_null(id, "id");
        let h = NameHash::of(ns.as_bytes());
        Target {
            key: Key::Pair(h.key32(), id),
            reg: RegKey { kind: Kind::Namespace, key: h.key32() as i64, check: h.check32() as u64 },
            label: Cow::Borrowed(ns),
        }
    }

    /// Remember the name; the registry slot when it is stored under this name.
    pub fn remember(&self) -> Option<i32> {
        let reg = shmem::get()?;
        match reg.remember(self.reg, &self.label) {
            Remembered::Slot(s) => Some(s),
            Remembered::Collision | Remembered::NotStored => None,
        }
    }
}

/// Take the lock (waiting or not). The name is registered first, so a waiter already
/// shows by name while it waits. Returns whether the lock is held now.
pub fn acquire(t: Target, mode: Mode, scope: Scope, wait: bool) -> bool {
    let slot = t.remember();
    let res = lockmgr::acquire(t.key, mode, scope, wait);
    if res == Acquired::Granted {
        if let (Some(slot), Some(reg)) = (slot, shmem::get()) {
            // Pair-id locks share their namespace's entry: a holder there would be wrong.
            if t.reg.kind != Kind::Namespace {
                // SAFETY: plain reads of backend-local state.
                let (pid, now) = unsafe { (pg_sys::MyProcPid, pg_sys::GetCurrentTimestamp()) };
                reg.note_granted(slot, pid, now);
            }
        }
    }
    res != Acquired::NotAvailable
}

/// Release one session hold; false (with the lock manager's WARNING) when not held.
pub fn release(t: Target, mode: Mode) -> bool {
    lockmgr::release(t.key, mode)
}
