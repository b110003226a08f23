//! A client for the [pg_named_locks] PostgreSQL extension: advisory locks by name, over
//! [tokio-postgres](tokio_postgres).
//!
//! ```no_run
//! use pg_named_locks::{connect, NamedLock};
//! # async fn run_report() {}
//! # async fn demo() -> Result<(), tokio_postgres::Error> {
//! let client = connect("host=127.0.0.1 user=app dbname=app").await?; // Arc<Client>
//! match NamedLock::try_acquire(&client, "daily-report-job").await? {
//!     Some(lock) => {
//!         // nobody else holds "daily-report-job" meanwhile; lock.token() fences writes
//!         run_report().await;
//!         lock.release().await?; // preferred: unlocked when this returns
//!     } // if dropped instead, a spawned task unlocks it (see "Releasing")
//!     None => println!("already running elsewhere"),
//! }
//! # Ok(()) }
//! ```
//!
//! What is here:
//!
//! - [`NamedLock`]: a held *session* lock (`lock_named`, `try_lock_named`,
//!   `lock_named(name, timeout)`, the `_shared` variants and leased locks), released by
//!   [`NamedLock::release`] or on drop. Exclusive locks are taken with the fenced functions
//!   and carry a [fencing token](NamedLock::token).
//! - [`xact`]: *transaction* locks (`xact_lock_named` …) on a
//!   [`Transaction`](tokio_postgres::Transaction): released by COMMIT or ROLLBACK, nothing
//!   to unlock, the kind to use behind a transaction-mode pooler.
//! - [`key`], [`key32`], [`pair_key`]: the keys the extension derives from names, computed
//!   locally (md5, the extension's compatibility contract).
//!
//! The extension must be installed in the database (`CREATE EXTENSION pg_named_locks`)
//! in a schema on the session's `search_path`. Leases need version 0.3.0, fencing tokens
//! 0.2.0 (see [`NamedLock::token`] for when a lock has none).
//!
//! # Releasing: `release().await` or drop
//!
//! A session lock belongs to the server connection, so unlocking is a query, and `Drop`
//! cannot await one. A [`NamedLock`] therefore keeps an `Arc<Client>` and a handle to the
//! tokio runtime it was acquired on, and its `Drop` *spawns* the unlock on that runtime.
//! The trade-off:
//!
//! - After a drop the lock is still held until the spawned task has run (usually
//!   microseconds, but not ordered with what the caller does next: another connection
//!   that tries the lock right after the drop may still find it busy), and an error of
//!   that unlock can only be reported to stderr.
//! - If the runtime is gone, nothing runs, but then the connection task is gone too, the
//!   session ends and PostgreSQL releases every lock of the session: a lock never outlives
//!   its connection.
//!
//! So prefer [`NamedLock::release`]: when it returns, the lock is released (it returns
//! the server's answer), and dropping the value remains the safety net for early returns,
//! `?` and panics. Both paths unlock exactly once.
//!
//! # Cancellation
//!
//! Every acquire runs its query in a spawned task and awaits it. If the caller stops
//! waiting (the future is dropped, e.g. by `tokio::time::timeout` or `select!`), the task
//! goes on; a lock granted after that is handed to no one, so it is dropped and unlocked
//! at once. Nothing is leaked, but the server keeps waiting for the lock meanwhile and the
//! client's other queries queue behind that wait: to bound a wait, use
//! [`NamedLock::acquire_timeout`], which gives up on the server (or cancel the query with
//! [`Client::cancel_token`](tokio_postgres::Client::cancel_token)).
//!
//! # Connections and poolers
//!
//! Session locks need a dedicated server connection that lives as long as the lock: use
//! one `Client` per lock holder (not a connection checked out of a pool and handed back
//! while locked), and do not acquire session locks on a client inside an open
//! transaction block. Behind a transaction-mode pooler (PgBouncer `pool_mode =
//! transaction`) use [`xact`] instead.
//!
//! [pg_named_locks]: https://pgxn.org/dist/pg_named_locks/

use std::sync::Arc;

use tokio_postgres::{Client, Error, NoTls};

mod keys;
mod lock;
pub mod xact;

pub use keys::{key, key32, pair_key};
pub use lock::{Mode, NamedLock};
/// The tokio-postgres this crate is built against.
pub use tokio_postgres;

/// Connects without TLS and drives the connection on the current tokio runtime; the
/// connection's error, if it ends with one, is printed to stderr.
///
/// `dsn` is a tokio-postgres connection string: `host=… port=… user=… dbname=…` or a
/// `postgresql://` URL. For TLS or your own handling of the connection, connect with
/// [`tokio_postgres::connect`] and wrap the client in an [`Arc`].
///
/// ```no_run
/// # async fn demo() -> Result<(), tokio_postgres::Error> {
/// let client = pg_named_locks::connect("postgresql://app@db.internal/app").await?;
/// # Ok(()) }
/// ```
pub async fn connect(dsn: &str) -> Result<Arc<Client>, Error> {
    let (client, connection) = tokio_postgres::connect(dsn, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("pg_named_locks: connection error: {}", describe(&e));
        }
    });
    Ok(Arc::new(client))
}

/// An error with its causes on one line (tokio-postgres's `Display` shows only the
/// outermost, e.g. "db error").
fn describe(e: &Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// A duration as whole microseconds (PostgreSQL's interval resolution), saturating.
fn micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// SQL for an interval parameter given as microseconds (`$n` is an int8).
macro_rules! interval {
    ($n:literal) => {
        concat!("($", $n, "::int8 * interval '1 microsecond')")
    };
}
pub(crate) use interval;
