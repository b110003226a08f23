//! Transaction locks: held until the transaction ends (COMMIT or ROLLBACK releases them;
//! there is no unlock), so nothing can leak and no guard is needed. They are the locks to
//! use behind a transaction-mode pooler (PgBouncer `pool_mode = transaction`), where a
//! session lock would stay on a server connection other clients get next.
//!
//! Each function takes the [`Transaction`] the lock belongs to, which makes "inside a
//! transaction" a compile-time requirement.
//!
//! ```no_run
//! # async fn demo(client: &mut tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
//! let tx = client.transaction().await?;
//! // both accounts, deadlock-free whatever the order (taken in key order, all or nothing)
//! pg_named_locks::xact::lock_many(&tx, &["account-17", "account-4"]).await?;
//! tx.execute("UPDATE accounts SET balance = balance - 100 WHERE id = 17", &[]).await?;
//! tx.execute("UPDATE accounts SET balance = balance + 100 WHERE id = 4", &[]).await?;
//! tx.commit().await?; // releases both
//! # Ok(()) }
//! ```
//!
//! A wait is bounded by the session's `lock_timeout` / `statement_timeout`, or per call by
//! [`lock_timeout`]. A failed lock call (an error) aborts the transaction, like any error.

use std::time::Duration;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Error, Row, Transaction};

use crate::{interval, micros};

async fn one(tx: &Transaction<'_>, sql: &str, name: &str) -> Result<Row, Error> {
    tx.query_typed_one(sql, &[(&name, Type::TEXT)]).await
}

async fn one2(tx: &Transaction<'_>, sql: &str, name: &str, us: i64) -> Result<Row, Error> {
    let params: [(&(dyn ToSql + Sync), Type); 2] = [(&name, Type::TEXT), (&us, Type::INT8)];
    tx.query_typed_one(sql, &params).await
}

/// Waits for the exclusive transaction lock (`xact_lock_named(name)`).
pub async fn lock(tx: &Transaction<'_>, name: &str) -> Result<(), Error> {
    one(tx, "SELECT xact_lock_named($1)", name).await.map(drop)
}

/// Takes the exclusive transaction lock if it is free, never waits
/// (`try_xact_lock_named(name)`).
pub async fn try_lock(tx: &Transaction<'_>, name: &str) -> Result<bool, Error> {
    Ok(one(tx, "SELECT try_xact_lock_named($1)", name)
        .await?
        .get(0))
}

/// Waits at most `timeout` for the exclusive transaction lock
/// (`xact_lock_named(name, timeout)`): `false` when the timeout passed (the transaction
/// goes on, holding nothing new).
///
/// ```no_run
/// # use std::time::Duration;
/// # async fn demo(tx: &tokio_postgres::Transaction<'_>) -> Result<(), tokio_postgres::Error> {
/// if !pg_named_locks::xact::lock_timeout(tx, "account-42", Duration::from_millis(250)).await? {
///     return Ok(()); // busy: try again later
/// }
/// # Ok(()) }
/// ```
pub async fn lock_timeout(
    tx: &Transaction<'_>,
    name: &str,
    timeout: Duration,
) -> Result<bool, Error> {
    let sql = concat!("SELECT xact_lock_named($1, ", interval!(2), ")");
    Ok(one2(tx, sql, name, micros(timeout)).await?.get(0))
}

/// Waits for the transaction lock in shared mode (`xact_lock_named_shared(name)`).
pub async fn lock_shared(tx: &Transaction<'_>, name: &str) -> Result<(), Error> {
    one(tx, "SELECT xact_lock_named_shared($1)", name)
        .await
        .map(drop)
}

/// Takes the transaction lock in shared mode unless it is held exclusively
/// (`try_xact_lock_named_shared(name)`).
pub async fn try_lock_shared(tx: &Transaction<'_>, name: &str) -> Result<bool, Error> {
    Ok(one(tx, "SELECT try_xact_lock_named_shared($1)", name)
        .await?
        .get(0))
}

/// Waits for the exclusive transaction lock and returns its fencing token
/// (`xact_lock_named_fenced(name)`, extension 0.2.0; see
/// [`NamedLock::token`](crate::NamedLock::token)).
pub async fn lock_fenced(tx: &Transaction<'_>, name: &str) -> Result<i64, Error> {
    Ok(one(tx, "SELECT xact_lock_named_fenced($1)", name)
        .await?
        .get(0))
}

/// Takes the exclusive transaction lock if it is free and returns its fencing token
/// (`try_xact_lock_named_fenced(name)`): `None` when busy.
pub async fn try_lock_fenced(tx: &Transaction<'_>, name: &str) -> Result<Option<i64>, Error> {
    Ok(one(tx, "SELECT try_xact_lock_named_fenced($1)", name)
        .await?
        .get(0))
}

/// Waits for all of `names`, exclusively (`xact_lock_many(names)`): taken in ascending key
/// order, so two calls never deadlock on each other however their lists are ordered;
/// duplicates are folded.
pub async fn lock_many(tx: &Transaction<'_>, names: &[&str]) -> Result<(), Error> {
    tx.query_typed_one("SELECT xact_lock_many($1)", &[(&names, Type::TEXT_ARRAY)])
        .await
        .map(drop)
}

/// Takes all of `names` if all are free, else none (`try_xact_lock_many(names)`).
pub async fn try_lock_many(tx: &Transaction<'_>, names: &[&str]) -> Result<bool, Error> {
    Ok(tx
        .query_typed_one(
            "SELECT try_xact_lock_many($1)",
            &[(&names, Type::TEXT_ARRAY)],
        )
        .await?
        .get(0))
}
