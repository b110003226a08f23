//! Lock primitives on PostgreSQL's lock manager.
//!
//! A named lock must be indistinguishable from `pg_advisory_lock(key)`: same lock tag,
//! same lock method, same modes, same session/transaction ownership. So this module does
//! what `src/backend/utils/adt/lockfuncs.c` does — build an advisory LOCKTAG and call
//! `LockAcquire` / `LockRelease` — and nothing else. Waiting, `lock_timeout`,
//! `statement_timeout`, cancel and the deadlock detector are then the lock manager's own.
//!
//! There is no parallel-mode check: the functions are PARALLEL RESTRICTED, so they only
//! run in the leader, and the built-ins dropped that check in PostgreSQL 13.

use pgrx::pg_sys;

use crate::pg::unguarded;

/// Which advisory key space a lock lives in. The numbering of `locktag_field4` (1 for
/// the bigint space, 2 for the two-int4 space) is the built-ins' and keeps the spaces apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    Int64(i64),
    Pair(i32, i32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Exclusive,
    Shared,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Held until unlocked or the session ends; survives COMMIT and ROLLBACK.
    Session,
    /// Released by the lock manager at the end of the transaction.
    Xact,
}

impl Mode {
    fn lockmode(self) -> pg_sys::LOCKMODE {
        (match self {
            Mode::Exclusive => pg_sys::ExclusiveLock,
            Mode::Shared => pg_sys::ShareLock,
        }) as pg_sys::LOCKMODE
    }
}

/// The current database's Oid (advisory locks are per database).
pub fn my_database() -> u32 {
    // SAFETY: MyDatabaseId is a plain backend-global Oid, set once at connection start
    // and only read here, in the backend's single thread.
    unsafe { pg_sys::MyDatabaseId }.to_u32()
}

impl Key {
    /// SET_LOCKTAG_INT64 / SET_LOCKTAG_INT32 from lockfuncs.c.
    pub fn locktag(self) -> pg_sys::LOCKTAG {
        self.locktag_in(my_database())
    }

    /// The tag of this key's lock in database `db`.
    pub fn locktag_in(self, db: u32) -> pg_sys::LOCKTAG {
        let (f2, f3, f4) = match self {
            Key::Int64(k) => (((k as u64) >> 32) as u32, k as u64 as u32, 1u16),
            Key::Pair(k1, k2) => (k1 as u32, k2 as u32, 2u16),
        };
        pg_sys::LOCKTAG {
            locktag_field1: db,
            locktag_field2: f2,
            locktag_field3: f3,
            locktag_field4: f4,
            locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
            locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// Only possible without waiting: somebody else holds a conflicting lock.
    NotAvailable,
    /// Newly granted to this backend.
    Granted,
    /// This backend already held it; the hold count went up.
    AlreadyHeld,
}

/// The first, non-waiting attempt of the one-key path, without pgrx's FFI guard (a
/// sigsetjmp, a thread check and an exception-stack swap per call, about a tenth of a
/// lock+unlock pair). Reports a full shared lock table as `NOT_AVAIL` instead of raising;
/// see `pg::unguarded` for what else it can raise and why the one-key path may take it.
/// Every other caller uses the guarded [`try_acquire`].
fn try_unguarded(tag: &pg_sys::LOCKTAG, mode: Mode, scope: Scope) -> pg_sys::LockAcquireResult::Type {
    // SAFETY: `tag` is a valid LOCKTAG for the call; dontWait and reportMemoryError =
    // false: see `pg::unguarded`.
    unsafe {
        #[cfg(any(feature = "pg15", feature = "pg16", feature = "pg17"))]
        {
            unguarded::LockAcquireExtended(tag, mode.lockmode(), scope == Scope::Session, true, false, std::ptr::null_mut())
        }
        #[cfg(not(any(feature = "pg15", feature = "pg16", feature = "pg17")))]
        {
            unguarded::LockAcquireExtended(tag, mode.lockmode(), scope == Scope::Session, true, false, std::ptr::null_mut(), false)
        }
    }
}

fn acquired(res: pg_sys::LockAcquireResult::Type) -> Acquired {
    match res {
        pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL => Acquired::NotAvailable,
        pg_sys::LockAcquireResult::LOCKACQUIRE_ALREADY_HELD | pg_sys::LockAcquireResult::LOCKACQUIRE_ALREADY_CLEAR => {
            Acquired::AlreadyHeld
        }
        _ => Acquired::Granted,
    }
}

/// Take a lock if it is free, never waiting, for the one-key path only (see
/// `try_unguarded`): `NotAvailable` at once when somebody else holds it.
#[inline]
pub fn try_acquire_fast(key: Key, mode: Mode, scope: Scope) -> Acquired {
    let tag = key.locktag();
    match acquired(try_unguarded(&tag, mode, scope)) {
        // busy, or the shared lock table is full: the guarded call tells which, raising
        // 53200 (with its hint) for the latter, like the built-in
        Acquired::NotAvailable => try_guarded(&tag, mode, scope),
        done => done,
    }
}

/// `try_acquire_fast` with pgrx's guard: for the multi-key paths and inside our
/// subtransaction, where an ERROR must unwind through our frames (to undo what the call
/// took, and to roll the subtransaction back).
#[inline]
pub fn try_acquire(key: Key, mode: Mode, scope: Scope) -> Acquired {
    try_guarded(&key.locktag(), mode, scope)
}

fn try_guarded(tag: &pg_sys::LOCKTAG, mode: Mode, scope: Scope) -> Acquired {
    // SAFETY: `tag` is a fully initialised LOCKTAG on our stack, valid for the call;
    // LockAcquire copies it. An ERROR (a full lock table: 53200) comes back as a panic.
    acquired(unsafe { pg_sys::LockAcquire(tag, mode.lockmode(), scope == Scope::Session, true) })
}

/// Take a lock, waiting like `pg_advisory_lock` (and raising, through pgrx's guard, on
/// lock_timeout, statement_timeout, cancel or deadlock). `NotAvailable` never comes back.
pub fn acquire_waiting(key: Key, mode: Mode, scope: Scope) -> Acquired {
    let tag = key.locktag();
    // SAFETY: as in `try_guarded`.
    acquired(unsafe { pg_sys::LockAcquire(&tag, mode.lockmode(), scope == Scope::Session, false) })
}

/// `unlock_named(name)`: release one hold of a session lock, without pgrx's guard.
/// Returns false (and the lock manager emits its WARNING "you don't own a lock of type
/// …") when this session does not hold it. That WARNING can raise a pending cancel (see
/// `pg::unguarded`): only for a caller whose frames own nothing.
#[inline]
pub fn release_fast(key: Key, mode: Mode) -> bool {
    let tag = key.locktag();
    // SAFETY: `tag` is a valid LOCKTAG for the call; see above.
    unsafe { unguarded::LockRelease(&tag, mode.lockmode(), true) }
}

/// `release_fast` with pgrx's guard: a cancel raised through the WARNING unwinds our
/// frames (`unlock_many` owns its list of names).
pub fn release(key: Key, mode: Mode) -> bool {
    let tag = key.locktag();
    // SAFETY: as in `release_fast`; errors come back as panics.
    unsafe { pg_sys::LockRelease(&tag, mode.lockmode(), true) }
}

/// Give back one hold this call took at `scope` (the undo of a successful acquisition;
/// transaction-level holds are owned by the current resource owner). The hold exists,
/// so the lock manager has no WARNING to emit and nothing to raise: unguarded.
pub fn release_held(key: Key, mode: Mode, scope: Scope) {
    let tag = key.locktag();
    // SAFETY: `tag` is a valid LOCKTAG for the call; see `pg::unguarded`.
    unsafe { unguarded::LockRelease(&tag, mode.lockmode(), scope == Scope::Session) };
}

/// Whether this backend holds the lock in exactly this mode (at any level). Reads only
/// the backend-local lock table.
pub fn held_by_me(key: Key, mode: Mode) -> bool {
    let tag = key.locktag();
    // SAFETY: LockHeldByMe only reads the backend-local lock hash; see `pg::unguarded`.
    unsafe {
        #[cfg(any(feature = "pg15", feature = "pg16"))]
        {
            unguarded::LockHeldByMe(&tag, mode.lockmode())
        }
        #[cfg(not(any(feature = "pg15", feature = "pg16")))]
        {
            unguarded::LockHeldByMe(&tag, mode.lockmode(), false)
        }
    }
}

/// The key of an advisory LOCKTAG (None for any other lock).
fn advisory_key(t: &pg_sys::LOCKTAG) -> Option<Key> {
    if t.locktag_type as u32 != pg_sys::LockTagType::LOCKTAG_ADVISORY {
        return None;
    }
    Some(if t.locktag_field4 == 1 {
        Key::Int64((((t.locktag_field2 as u64) << 32) | t.locktag_field3 as u64) as i64)
    } else {
        Key::Pair(t.locktag_field2 as i32, t.locktag_field3 as i32)
    })
}

/// A node of the lock manager's per-process lists: `dlist_node` from PostgreSQL 16 on,
/// `SHM_QUEUE` before. Both are {prev, next}, circular through the list head.
#[repr(C)]
struct Link {
    prev: *const Link,
    next: *const Link,
}
const _: () = {
    #[cfg(feature = "pg15")]
    assert!(size_of::<pg_sys::SHM_QUEUE>() == size_of::<Link>());
    #[cfg(not(feature = "pg15"))]
    assert!(size_of::<pg_sys::dlist_node>() == size_of::<Link>() && size_of::<pg_sys::dlist_head>() == size_of::<Link>());
};

/// The key of every advisory lock some backend holds or awaits right now (a key may come
/// more than once; `f` gets keys only). For the registry's eviction, which asks only
/// "in use or not" and runs under a stream of new names: it walks each process's (and
/// each prepared transaction's) own list of its locks (`myProcLocks`), so it costs 16
/// list heads per process plus one step per lock held, where `GetLockStatusData` walks
/// every bucket of the shared PROCLOCK table (sized for max_locks_per_transaction ×
/// max_connections), however few locks there are. One partition lock at a time, in
/// shared mode, as the lists require: the result is not one atomic snapshot of all
/// partitions, which eviction does not need (a lock taken after its partition was read
/// is one taken after the snapshot, which an eviction pass must tolerate anyway, and its
/// name was just used, so it is not old).
pub fn for_each_advisory_key_in_use(mut f: impl FnMut(Key)) {
    // SAFETY: ProcGlobal, its allProcs array and PreparedXactProcs (max_prepared_xacts
    // more PGPROCs) are set up before any backend runs and never move.
    // proc->myProcLocks[i], and every PROCLOCK and LOCK reachable from it, are protected
    // by lock-manager partition lock i, which we hold (shared) while we walk them; both
    // list types are circular through the head, and a never-initialised dlist_head
    // (next = NULL) is empty. LWLockAcquire/Release raise only for a corrupt lock or too
    // many LWLocks held; an ERROR there releases every LWLock on abort.
    unsafe {
        let hdr = pg_sys::ProcGlobal;
        let backends = std::slice::from_raw_parts((*hdr).allProcs, (*hdr).allProcCount as usize);
        // allProcCount leaves out the dummy processes that own prepared transactions'
        // locks: those are PreparedXactProcs[0..max_prepared_transactions].
        let prepared = match pg_sys::PreparedXactProcs {
            p if p.is_null() || unguarded::max_prepared_xacts <= 0 => &[][..],
            p => std::slice::from_raw_parts(p, unguarded::max_prepared_xacts as usize),
        };
        let link_offset = std::mem::offset_of!(pg_sys::PROCLOCK, procLink);
        for part in 0..pg_sys::NUM_LOCK_PARTITIONS as usize {
            let lock = &raw mut (*pg_sys::MainLWLockArray.add(pg_sys::LOCK_MANAGER_LWLOCK_OFFSET as usize + part)).lock;
            pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_SHARED);
            for proc in backends.iter().chain(prepared) {
                let head = (&raw const proc.myProcLocks[part]).cast::<Link>();
                let mut node = (*head).next;
                while !node.is_null() && node != head {
                    let proclock = node.cast::<u8>().sub(link_offset).cast::<pg_sys::PROCLOCK>();
                    if let Some(key) = advisory_key(&(*(*proclock).tag.myLock).tag) {
                        f(key);
                    }
                    node = (*node).next;
                }
            }
            pg_sys::LWLockRelease(lock);
        }
    }
}

/// Every advisory lock held or awaited right now, in any database, from one snapshot of
/// the lock table (`GetLockStatusData`, what `pg_locks` reads; it takes every lock-manager
/// partition lock briefly): `f(database, key, instance)` once per (lock, backend).
pub fn for_each_advisory_lock(mut f: impl FnMut(u32, Key, &pg_sys::LockInstanceData)) {
    // SAFETY: GetLockStatusData returns a palloc'd snapshot valid in the current memory
    // context; we read its `nelements` entries and nothing else.
    unsafe {
        let data = pg_sys::GetLockStatusData();
        let locks = std::slice::from_raw_parts((*data).locks, (*data).nelements as usize);
        for l in locks {
            if let Some(key) = advisory_key(&l.locktag) {
                f(l.locktag.locktag_field1, key, l);
            }
        }
    }
}

fn same_tag(a: &pg_sys::LOCKTAG, b: &pg_sys::LOCKTAG) -> bool {
    a.locktag_field1 == b.locktag_field1
        && a.locktag_field2 == b.locktag_field2
        && a.locktag_field3 == b.locktag_field3
        && a.locktag_field4 == b.locktag_field4
        && a.locktag_type == b.locktag_type
        && a.locktag_lockmethodid == b.locktag_lockmethodid
}

/// Whether `proc` holds the advisory lock `key` of database `db` in ExclusiveLock mode
/// (granted, not awaited): its own lock list in the tag's partition, under that
/// partition's lock in shared mode (for the fencing check; see `fence`).
///
/// # Safety
/// `proc` must be one of the PGPROCs in shared memory (allProcs or PreparedXactProcs).
unsafe fn proc_holds_exclusive(proc: *const pg_sys::PGPROC, db: u32, key: Key) -> bool {
    let tag = key.locktag_in(db);
    // SAFETY: as in `for_each_advisory_key_in_use`: the list of partition `part` is
    // protected by that partition's lock, held shared while we walk it. LockTagHashCode
    // only hashes the tag. LWLockAcquire/Release raise only for a corrupt lock or too
    // many LWLocks held (we hold at most the fence lock besides).
    unsafe {
        let part = (pg_sys::LockTagHashCode(&tag) % pg_sys::NUM_LOCK_PARTITIONS) as usize;
        let lock = &raw mut (*pg_sys::MainLWLockArray.add(pg_sys::LOCK_MANAGER_LWLOCK_OFFSET as usize + part)).lock;
        let link_offset = std::mem::offset_of!(pg_sys::PROCLOCK, procLink);
        let exclusive = 1 << pg_sys::ExclusiveLock;
        pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_SHARED);
        let head = (&raw const (*proc).myProcLocks[part]).cast::<Link>();
        let mut node = (*head).next;
        let mut found = false;
        while !node.is_null() && node != head {
            let proclock = node.cast::<u8>().sub(link_offset).cast::<pg_sys::PROCLOCK>();
            if (*proclock).holdMask & exclusive != 0 && same_tag(&(*(*proclock).tag.myLock).tag, &tag) {
                found = true;
                break;
            }
            node = (*node).next;
        }
        pg_sys::LWLockRelease(lock);
        found
    }
}

/// `proc_holds_exclusive` for the backend in process slot `procno`.
///
/// # Safety
/// `procno` must be below ProcGlobal->allProcCount.
pub unsafe fn backend_holds_exclusive(procno: i32, db: u32, key: Key) -> bool {
    // SAFETY: per the contract, within allProcs, which never moves.
    unsafe { proc_holds_exclusive((*pg_sys::ProcGlobal).allProcs.add(procno as usize), db, key) }
}

/// Whether the prepared transaction `xid` holds the advisory lock exclusively.
pub fn prepared_holds_exclusive(xid: u32, db: u32, key: Key) -> bool {
    // SAFETY: PreparedXactProcs has max_prepared_xacts PGPROCs, fixed at start; a dummy
    // proc's xid is set when it is given a prepared transaction (a racy read is checked
    // again by the lock walk, under the partition lock).
    unsafe {
        let procs = match pg_sys::PreparedXactProcs {
            p if p.is_null() || unguarded::max_prepared_xacts <= 0 => return false,
            p => std::slice::from_raw_parts(p, unguarded::max_prepared_xacts as usize),
        };
        procs.iter().any(|p| p.xid.into_inner() == xid && proc_holds_exclusive(p, db, key))
    }
}

/// How many holds this backend has on the lock in `mode`, transaction and session
/// holds together (the LOCALLOCK's `nLocks`): 0 when not held. The lock manager keeps
/// the count in its backend-local table, which it does not export; the one way to reach
/// a LOCALLOCK is `LockAcquireExtended`'s `locallockp`. So a lock this backend holds is
/// taken once more without waiting (for a held lock that only counts up in the local
/// table, no shared memory), the count read, and the extra hold given back.
pub fn hold_count(key: Key, mode: Mode) -> i64 {
    if !held_by_me(key, mode) {
        return 0;
    }
    let tag = key.locktag();
    let mut local: *mut pg_sys::LOCALLOCK = std::ptr::null_mut();
    // SAFETY: `tag` is valid for the call; the lock is held, so this is the lock
    // manager's "already held" path (GrantLockLocal; it may grow the owner array, and a
    // failed repalloc raises through pgrx's guard before anything is counted).
    let res = unsafe {
        #[cfg(any(feature = "pg15", feature = "pg16", feature = "pg17"))]
        {
            pg_sys::LockAcquireExtended(&tag, mode.lockmode(), true, true, true, &mut local)
        }
        #[cfg(not(any(feature = "pg15", feature = "pg16", feature = "pg17")))]
        {
            pg_sys::LockAcquireExtended(&tag, mode.lockmode(), true, true, true, &mut local, false)
        }
    };
    if acquired(res) != Acquired::AlreadyHeld || local.is_null() {
        // held_by_me said held: only a Granted (impossible) would get here; give it back
        if acquired(res) == Acquired::Granted {
            release_held(key, mode, Scope::Session);
        }
        return 0;
    }
    // SAFETY: the LOCALLOCK of a lock we hold stays valid until it is released.
    let n = unsafe { (*local).nLocks } - 1;
    release_held(key, mode, Scope::Session);
    n
}

/// The place of `pid` in the wait queue of the advisory lock `key` of database `db`
/// (1 = next), in the lock manager's own order: `GetBlockerStatusData`, what
/// pg_blocking_pids reads, lists the processes ahead of a waiter in its lock's queue.
/// None when `pid` is not waiting for that lock (any more).
pub fn queue_position(pid: i32, db: u32, key: Key) -> Option<i32> {
    let tag = key.locktag_in(db);
    // SAFETY: GetBlockerStatusData returns a palloc'd snapshot (it takes every
    // lock-manager partition lock and ProcArrayLock for the copy, raising only out of
    // memory, through pgrx's guard); we read its arrays within their counts.
    unsafe {
        let data = pg_sys::GetBlockerStatusData(pid);
        let procs = std::slice::from_raw_parts((*data).procs, (*data).nprocs as usize);
        let p = procs.iter().find(|p| p.pid == pid)?;
        if p.num_locks <= 0 {
            return None;
        }
        let first = &*(*data).locks.add(p.first_lock as usize);
        same_tag(&first.locktag, &tag).then_some(p.num_waiters + 1)
    }
}
