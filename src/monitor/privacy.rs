//! Who may see a name (DESIGN.md §5), in one place: [`may_see`] is the rule,
//! [`Visibility`] applies it to many names at once, and a name the caller may not see
//! shows as [`HIDDEN`].

use std::collections::HashMap;

use pgrx::pg_sys;

use crate::pg::lockmgr::Key;
use crate::registry::Resolved;
use rustc_hash::FxBuildHasher as FxBuild;

pub const HIDDEN: &str = "<insufficient privilege>";

/// Memoised [`may_see`] for one query (few distinct roles, many entries; runs of
/// one role are the common case, so the last answer is checked before the map).
pub struct Visibility {
    last: Option<(u32, bool)>,
    seen: HashMap<u32, bool, FxBuild>,
}

impl Default for Visibility {
    fn default() -> Self {
        Visibility::new()
    }
}

impl Visibility {
    pub fn new() -> Self {
        Visibility { last: None, seen: HashMap::default() }
    }
    pub fn name(&mut self, role: u32, name: String) -> String {
        let visible = match self.last {
            Some((r, v)) if r == role => v,
            _ => {
                let v = *self.seen.entry(role).or_insert_with(|| may_see(role));
                self.last = Some((role, v));
                v
            }
        };
        if visible {
            name
        } else {
            HIDDEN.to_string()
        }
    }

    /// How a lock the registry resolved is shown: its name, "namespace:id" when only the
    /// namespace of a (namespace, id) pair is known, or HIDDEN. Takes the name out of `f`.
    pub fn lock_name(&mut self, f: &mut Resolved, lock: Key) -> String {
        match (self.name(f.role, std::mem::take(&mut f.name)), lock) {
            (n, _) if n == HIDDEN => n,
            (n, Key::Pair(_, id)) if f.namespace_only => format!("{n}:{id}"),
            (n, _) => n,
        }
    }
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
