//! Fencing tokens (DESIGN.md §7): every fenced grant gets a number larger than every
//! number handed out before it by this server or by any server on an ancestor timeline,
//! and any session can ask whether a token's grant still holds its lock.
//!
//! # The token
//! `(timeline id << 47) | counter`. The counter is one shared atomic; a backend that
//! draws a value above the reserved block's end reserves the next block of `BLOCK`
//! values by writing its end to `pg_named_locks.fence` ([`file`]) before it hands out
//! anything from it. Startup (and the reinitialisation after a crash) reads that mark
//! and starts above it, so a restart never repeats a counter; a promoted standby runs on
//! a higher timeline, so its tokens are larger whatever its counter. No WAL and no table
//! write per grant; one file write per block.
//!
//! # Which grant holds the lock now
//! One record per (database, key), written by the fenced grant: its token and who got it
//! (a session id that this backend's process slot carries while it lives, and the slot).
//! `check` compares the token, then asks the lock manager whether that slot still holds
//! the lock exclusively (`pg::lockmgr::proc_holds_exclusive`) and whether the slot still
//! carries that session (cleared at backend exit, so a new backend in the slot is not
//! the holder). A plain grant by the same session after its fenced hold ended clears
//! the record (`lock::acquire` notices it for sessions that ever took a token). A
//! transaction-level hold that PREPARE TRANSACTION hands to a prepared transaction is
//! found by the transaction id noted at PRE_PREPARE.
//!
//! # Locking
//! `Header::lock` protects the records (shared to read, exclusive to write); it is taken
//! before a lock-manager partition lock, never after. `Header::io_lock` serialises block
//! reservations (file I/O under it; nothing else waits for it).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release, Ordering::SeqCst};

use pgrx::pg_sys;

use crate::pg::backend::BackendLocal;
use crate::pg::lockmgr::{self, Key};
use crate::registry::Guard;

pub mod file;
pub mod shmem;

/// Counter values reserved per write of the high-water mark (about one file write per
/// million fenced grants; a crash skips at most that many).
pub const BLOCK: u64 = 1 << 20;
pub const COUNTER_BITS: u32 = 47;
pub const MAX_COUNTER: u64 = (1 << COUNTER_BITS) - 1;
/// Timelines above this do not fit the token's 16 high bits (of 63).
pub const MAX_TIMELINE: u32 = 0xffff;
const MAGIC: u32 = 0x504e_4631; // "PNF1"
/// Slots a record may sit from its home slot (open addressing).
const PROBE: usize = 32;

#[repr(C)]
pub struct Header {
    lock: pg_sys::LWLock,
    io_lock: pg_sys::LWLock,
    magic: u32,
    tranche_id: i32,
    /// the file read at startup was damaged: no token may be handed out
    damaged: AtomicU32,
    nprocs: u32,
    nrecords: u32,
    /// the last counter value drawn
    next: AtomicU64,
    /// the durable high-water mark: values up to it may be handed out
    reserved: AtomicU64,
    next_session: AtomicU64,
    /// block reservations written since startup
    pub writes: AtomicU64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Record {
    /// 0 = never used
    used: u32,
    db: u32,
    key: i64,
    /// 0 = no valid grant
    pub token: i64,
    pub session: u64,
    procno: i32,
    /// the transaction that was being prepared when the holder last ran PREPARE
    xid: u32,
}

/// Why no token could be handed out.
#[derive(Debug)]
pub enum MintError {
    Damaged,
    Io(std::io::Error),
    Exhausted,
    Timeline(u32),
}

fn align(n: usize) -> usize {
    (n + 63) & !63
}

/// The process slots and records the segment is sized for: fixed at server start.
pub fn sizing() -> (usize, usize) {
    // SAFETY: plain reads of settings fixed at server start (PGC_POSTMASTER).
    let (backends, locks, prepared) = unsafe {
        (pg_sys::MaxBackends as usize, pg_sys::max_locks_per_xact as usize, crate::pg::unguarded::max_prepared_xacts as usize)
    };
    // Twice the shared lock table's nominal size: every fenced hold is a lock in it, so
    // live records never fill the table; dead ones are reused (`record`).
    let records = (2 * locks * (backends + prepared)).clamp(1024, 1 << 24).next_power_of_two();
    (backends, records)
}

pub fn shmem_size((nprocs, nrecords): (usize, usize)) -> usize {
    align(size_of::<Header>()) + align(nprocs * size_of::<AtomicU64>()) + nrecords * size_of::<Record>()
}

#[derive(Clone, Copy)]
pub struct Fence {
    hdr: *mut Header,
}

/// This backend's session id (0 until its first token) and whether it ever took one.
static SESSION: BackendLocal<u64> = BackendLocal::new(0);
/// The session has taken a token: plain exclusive grants must look for its records.
static FENCED: BackendLocal<bool> = BackendLocal::new(false);

/// This session's id (0 before its first token).
pub fn my_session_id() -> u64 {
    SESSION.get()
}

/// Whether this session ever took a token (one load on the plain lock path).
#[inline(always)]
pub fn session_fenced() -> bool {
    FENCED.get()
}

impl Fence {
    /// Lay out the fence in `mem` and read the high-water mark from disk.
    ///
    /// # Safety
    /// `mem`: `shmem_size(sizing)` writable bytes, not yet shared with another process.
    pub unsafe fn init(mem: *mut u8, sizing: (usize, usize), tranche_id: i32) -> Fence {
        unsafe {
            std::ptr::write_bytes(mem, 0, shmem_size(sizing));
            let f = Fence { hdr: mem.cast() };
            let h = &mut *f.hdr;
            pg_sys::LWLockInitialize(&mut h.lock, tranche_id);
            pg_sys::LWLockInitialize(&mut h.io_lock, tranche_id);
            h.tranche_id = tranche_id;
            h.nprocs = sizing.0 as u32;
            h.nrecords = sizing.1 as u32;
            let mark = match file::read() {
                file::Found::Missing => 0,
                file::Found::Mark(m) => m,
                file::Found::Damaged => {
                    h.damaged.store(1, Relaxed);
                    0
                }
            };
            h.next.store(mark, Relaxed);
            h.reserved.store(mark, Relaxed);
            h.magic = MAGIC;
            f
        }
    }

    /// # Safety
    /// `mem` must stay mapped for the life of the backend and hold a fence laid out by
    /// `init` (checked by its magic).
    pub unsafe fn attach(mem: *mut u8) -> Option<Fence> {
        let f = Fence { hdr: mem.cast() };
        // SAFETY: per the contract, the header is initialised.
        (unsafe { (*f.hdr).magic } == MAGIC).then_some(f)
    }

    pub fn header(&self) -> &Header {
        // SAFETY: mapped for the backend's life; fields read through & are atomics or
        // fixed at init.
        unsafe { &*self.hdr }
    }

    pub fn tranche_id(&self) -> i32 {
        self.header().tranche_id
    }

    fn sessions(&self) -> &[AtomicU64] {
        // SAFETY: nprocs atomics right after the header, zeroed at init.
        unsafe {
            let p = (self.hdr as *mut u8).add(align(size_of::<Header>())).cast::<AtomicU64>();
            std::slice::from_raw_parts(p, self.header().nprocs as usize)
        }
    }

    fn records(&self) -> *mut Record {
        let h = self.header();
        // SAFETY: the record array follows the session array.
        unsafe {
            (self.hdr as *mut u8)
                .add(align(size_of::<Header>()) + align(h.nprocs as usize * size_of::<AtomicU64>()))
                .cast::<Record>()
        }
    }

    fn home(&self, db: u32, key: i64) -> usize {
        let h = (key as u64 ^ ((db as u64) << 40)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> 32) as usize & (self.header().nrecords as usize - 1)
    }

    /// The probe sequence of (db, key): PROBE slots from its home.
    fn probe(&self, db: u32, key: i64) -> impl Iterator<Item = *mut Record> + '_ {
        let mask = self.header().nrecords as usize - 1;
        let home = self.home(db, key);
        // SAFETY: every index is masked into the array.
        (0..PROBE.min(mask + 1)).map(move |i| unsafe { self.records().add((home + i) & mask) })
    }

    /// The next counter value, durable before it is returned.
    pub fn mint(&self) -> Result<u64, MintError> {
        let h = self.header();
        if h.damaged.load(Relaxed) != 0 {
            return Err(MintError::Damaged);
        }
        let c = h.next.fetch_add(1, SeqCst) + 1;
        if c > MAX_COUNTER {
            return Err(MintError::Exhausted);
        }
        if c <= h.reserved.load(Acquire) {
            return Ok(c);
        }
        self.reserve(c)?;
        Ok(c)
    }

    #[cold]
    fn reserve(&self, c: u64) -> Result<(), MintError> {
        let h = self.header();
        // SAFETY: the lock is in mapped shared memory.
        let _io = Guard::new(unsafe { &raw mut (*self.hdr).io_lock }, true);
        if c <= h.reserved.load(Acquire) {
            return Ok(());
        }
        let mark = (c + BLOCK).min(MAX_COUNTER);
        file::write(mark).map_err(MintError::Io)?;
        h.writes.fetch_add(1, Relaxed);
        h.reserved.store(mark, Release);
        Ok(())
    }

    /// This backend's session id, assigned on first use; its slot carries it until the
    /// backend exits.
    fn my_session(&self) -> Option<(u64, i32)> {
        let procno = my_procno();
        if procno < 0 || procno as usize >= self.sessions().len() {
            return None;
        }
        let mut s = SESSION.get();
        if s == 0 {
            s = self.header().next_session.fetch_add(1, Relaxed) + 1;
            self.sessions()[procno as usize].store(s, SeqCst);
            SESSION.set(s);
            // SAFETY: registers a plain function for this backend's exit, with the
            // fence's address (stays mapped until after before_shmem_exit callbacks).
            unsafe { pg_sys::before_shmem_exit(Some(forget_session), pg_sys::Datum::from(self.hdr as usize)) };
        }
        Some((s, procno))
    }

    /// Record the grant of (db, key) under `token` to this session. False when no slot
    /// is free within the probe window (every one a live grant), or this process has no
    /// slot of its own (not a regular backend).
    pub fn record(&self, db: u32, key: i64, token: i64) -> bool {
        let Some((session, procno)) = self.my_session() else { return false };
        FENCED.set(true);
        let rec = Record { used: 1, db, key, token, session, procno, xid: 0 };
        // SAFETY: the lock is in mapped shared memory.
        let _g = Guard::new(unsafe { &raw mut (*self.hdr).lock }, true);
        let mut free = None;
        let mut dead = None;
        for r in self.probe(db, key) {
            // SAFETY: exclusive lock held: the records are ours to read and write.
            let cur = unsafe { *r };
            if cur.used == 0 || (cur.db == db && cur.key == key) {
                // SAFETY: as above.
                unsafe { *r = rec };
                return true;
            }
            if free.is_none() && cur.token == 0 {
                free = Some(r);
            }
            if dead.is_none() && free.is_none() && !self.holds(&cur) {
                dead = Some(r);
            }
        }
        match free.or(dead) {
            // SAFETY: as above.
            Some(r) => unsafe {
                *r = rec;
                true
            },
            None => false,
        }
    }

    /// The record of (db, key), copied under the shared lock.
    pub fn lookup(&self, db: u32, key: i64) -> Option<Record> {
        // SAFETY: the lock is in mapped shared memory.
        let _g = Guard::new(unsafe { &raw mut (*self.hdr).lock }, false);
        for r in self.probe(db, key) {
            // SAFETY: shared lock held: no writer.
            let cur = unsafe { *r };
            if cur.used == 0 {
                return None;
            }
            if cur.db == db && cur.key == key {
                return Some(cur);
            }
        }
        None
    }

    /// Whether the grant a record describes still holds its lock: the same session in
    /// the same process slot holds it exclusively, or a prepared transaction with the
    /// noted xid does.
    pub fn holds(&self, r: &Record) -> bool {
        if r.token == 0 {
            return false;
        }
        let key = Key::Int64(r.key);
        let sessions = self.sessions();
        if r.procno >= 0 && (r.procno as usize) < sessions.len() && sessions[r.procno as usize].load(SeqCst) == r.session {
            // SAFETY: procno indexes ProcGlobal->allProcs (below nprocs = MaxBackends).
            if unsafe { lockmgr::backend_holds_exclusive(r.procno, r.db, key) } {
                return true;
            }
        }
        r.xid != 0 && lockmgr::prepared_holds_exclusive(r.xid, r.db, key)
    }

    /// A plain grant of (db, key) to this session after its fenced hold ended: the old
    /// token no longer stands for the hold.
    pub fn forget_mine(&self, db: u32, key: i64) {
        let s = SESSION.get();
        // SAFETY: the lock is in mapped shared memory.
        let _g = Guard::new(unsafe { &raw mut (*self.hdr).lock }, true);
        for r in self.probe(db, key) {
            // SAFETY: exclusive lock held.
            unsafe {
                if (*r).used == 0 {
                    return;
                }
                if (*r).db == db && (*r).key == key {
                    if (*r).session == s {
                        (*r).token = 0;
                    }
                    return;
                }
            }
        }
    }

    /// PRE_PREPARE: this session's grants may pass to the prepared transaction `xid`.
    pub fn note_preparing(&self, xid: u32) {
        let s = SESSION.get();
        // SAFETY: the lock is in mapped shared memory.
        let _g = Guard::new(unsafe { &raw mut (*self.hdr).lock }, true);
        for i in 0..self.header().nrecords as usize {
            // SAFETY: exclusive lock held; i < nrecords.
            unsafe {
                let r = self.records().add(i);
                if (*r).used != 0 && (*r).session == s && (*r).token != 0 {
                    (*r).xid = xid;
                }
            }
        }
    }
}

/// before_shmem_exit: this process slot no longer carries the session.
unsafe extern "C-unwind" fn forget_session(_code: std::ffi::c_int, arg: pg_sys::Datum) {
    let f = Fence { hdr: arg.value() as *mut Header };
    let procno = my_procno();
    if procno >= 0 && (procno as usize) < f.sessions().len() {
        f.sessions()[procno as usize].store(0, SeqCst);
    }
}

/// This backend's index in ProcGlobal->allProcs.
fn my_procno() -> i32 {
    // SAFETY: MyProc and ProcGlobal are set before any SQL runs; MyProc points into
    // allProcs.
    unsafe {
        if pg_sys::MyProc.is_null() {
            return -1;
        }
        pg_sys::MyProc.offset_from((*pg_sys::ProcGlobal).allProcs) as i32
    }
}
