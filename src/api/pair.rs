//! The two-key ("pair") functions: `lock_pair(namespace, name)`, `lock_pair(namespace, id)`
//! and their siblings, and their per-call timeout overloads.

use pgrx::prelude::*;

use crate::lock::wait::Wait;
use crate::lock::{self, Target};
use crate::pg::lockmgr::{Mode, Scope};
use crate::pg::text::Text;

family! { (namespace: Option<Text>, name: Option<Text>) => Target::pair(namespace.map(Text::as_str), name.map(Text::as_str));
    lock   lock_pair                   "lock_pair"                   Exclusive Session;
    lock   lock_pair_shared            "lock_pair_shared"            Shared    Session;
    try    try_lock_pair               "try_lock_pair"               Exclusive Session;
    try    try_lock_pair_shared        "try_lock_pair_shared"        Shared    Session;
    unlock unlock_pair                 "unlock_pair"                 Exclusive;
    unlock unlock_pair_shared          "unlock_pair_shared"          Shared;
    lock   xact_lock_pair              "xact_lock_pair"              Exclusive Xact;
    lock   xact_lock_pair_shared       "xact_lock_pair_shared"       Shared    Xact;
    try    try_xact_lock_pair          "try_xact_lock_pair"          Exclusive Xact;
    try    try_xact_lock_pair_shared   "try_xact_lock_pair_shared"   Shared    Xact;
}

family! { (namespace: Option<Text>, id: Option<i32>) => Target::pair_id(namespace.map(Text::as_str), id);
    lock   lock_pair_id                "lock_pair"                   Exclusive Session;
    lock   lock_pair_id_shared         "lock_pair_shared"            Shared    Session;
    try    try_lock_pair_id            "try_lock_pair"               Exclusive Session;
    try    try_lock_pair_id_shared     "try_lock_pair_shared"        Shared    Session;
    unlock unlock_pair_id              "unlock_pair"                 Exclusive;
    unlock unlock_pair_id_shared       "unlock_pair_shared"          Shared;
    lock   xact_lock_pair_id           "xact_lock_pair"              Exclusive Xact;
    lock   xact_lock_pair_id_shared    "xact_lock_pair_shared"       Shared    Xact;
    try    try_xact_lock_pair_id       "try_xact_lock_pair"          Exclusive Xact;
    try    try_xact_lock_pair_id_shared "try_xact_lock_pair_shared"  Shared    Xact;
}

// Per-call timeouts: true when locked, false when the timeout passed first (never
// leaving the lock held), 0 = try. The caller's lock_timeout is not changed.
family! { (namespace: Option<Text>, name: Option<Text>, timeout: Option<Interval>) => (Target::pair(namespace.map(Text::as_str), name.map(Text::as_str)), timeout);
    timed  lock_pair_timeout                "lock_pair"              Exclusive Session;
    timed  lock_pair_shared_timeout         "lock_pair_shared"       Shared    Session;
    timed  xact_lock_pair_timeout           "xact_lock_pair"         Exclusive Xact;
    timed  xact_lock_pair_shared_timeout    "xact_lock_pair_shared"  Shared    Xact;
}

family! { (namespace: Option<Text>, id: Option<i32>, timeout: Option<Interval>) => (Target::pair_id(namespace.map(Text::as_str), id), timeout);
    timed  lock_pair_id_timeout             "lock_pair"              Exclusive Session;
    timed  lock_pair_id_shared_timeout      "lock_pair_shared"       Shared    Session;
    timed  xact_lock_pair_id_timeout        "xact_lock_pair"         Exclusive Xact;
    timed  xact_lock_pair_id_shared_timeout "xact_lock_pair_shared"  Shared    Xact;
}
