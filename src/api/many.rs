//! The `_many` functions. Many locks at once: ascending key order (so concurrent callers
//! cannot deadlock on each other), duplicates folded, all or nothing. An empty array is a
//! no-op.

use pgrx::prelude::*;

use crate::lock;
use crate::lock::wait::Wait;
use crate::pg::lockmgr::{Mode, Scope};
use crate::pg::text::TextArray;

#[pg_extern(volatile, parallel_restricted)]
pub fn lock_many(names: Option<TextArray>) {
    lock::acquire(&lock::many(names), Mode::Exclusive, Scope::Session, Wait::Forever);
}

#[pg_extern(volatile, parallel_restricted, name = "lock_many")]
pub fn lock_many_timeout(names: Option<TextArray>, timeout: Option<Interval>) -> bool {
    let targets = lock::many(names);
    lock::acquire(&targets, Mode::Exclusive, Scope::Session, lock::timeout(timeout))
}

#[pg_extern(volatile, parallel_restricted)]
pub fn try_lock_many(names: Option<TextArray>) -> bool {
    lock::acquire(&lock::many(names), Mode::Exclusive, Scope::Session, Wait::No)
}

/// Releases one session hold of each distinct name; returns how many were released.
#[pg_extern(volatile, parallel_restricted)]
pub fn unlock_many(names: Option<TextArray>) -> i32 {
    lock::release(&lock::many(names), Mode::Exclusive)
}

#[pg_extern(volatile, parallel_restricted)]
pub fn xact_lock_many(names: Option<TextArray>) {
    lock::acquire(&lock::many(names), Mode::Exclusive, Scope::Xact, Wait::Forever);
}

#[pg_extern(volatile, parallel_restricted, name = "xact_lock_many")]
pub fn xact_lock_many_timeout(names: Option<TextArray>, timeout: Option<Interval>) -> bool {
    let targets = lock::many(names);
    lock::acquire(&targets, Mode::Exclusive, Scope::Xact, lock::timeout(timeout))
}

#[pg_extern(volatile, parallel_restricted)]
pub fn try_xact_lock_many(names: Option<TextArray>) -> bool {
    lock::acquire(&lock::many(names), Mode::Exclusive, Scope::Xact, Wait::No)
}
