//! Session locks: [`NamedLock`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Error, Row};

use crate::{interval, micros};

/// The mode of a lock: exclusive (`lock_named`) or shared (`lock_named_shared`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// One holder at a time; excludes shared holders too.
    Exclusive,
    /// Any number of shared holders at once; excludes exclusive holders.
    Shared,
}

/// How long an acquire may wait.
#[derive(Clone, Copy)]
enum Wait {
    Forever,
    No,
    /// microseconds
    Timeout(i64),
}

/// What an acquire asks the server for.
#[derive(Clone, Copy)]
enum Kind {
    /// `lock_named_fenced` (or `lock_named`)
    Exclusive,
    /// `lock_named_shared`
    Shared,
    /// `lock_named_lease`, then a re-entrant `lock_named_fenced`
    Leased(Duration),
}

/// A held session lock on a name: one count of it (session locks are re-entrant and
/// counted, like PostgreSQL's advisory locks), released exactly once, by
/// [`release`](Self::release) or on drop (see the crate documentation, "Releasing").
///
/// Acquire it with one of the constructors; call them on a tokio runtime (the lock keeps
/// a handle to it for the unlock on drop).
///
/// ```no_run
/// use std::time::Duration;
/// use pg_named_locks::{connect, NamedLock};
/// # async fn demo() -> Result<(), tokio_postgres::Error> {
/// let client = connect("host=127.0.0.1 user=app dbname=app").await?;
/// if let Some(lock) = NamedLock::acquire_timeout(&client, "account-42", Duration::from_secs(5)).await? {
///     let token = lock.token().expect("exclusive locks are fenced");
///     // ... writes elsewhere carry `token`; the database can check it (named_lock_check)
///     lock.release().await?;
/// }
/// # Ok(()) }
/// ```
#[must_use = "the lock is released when this value is dropped"]
pub struct NamedLock {
    client: Arc<Client>,
    name: String,
    mode: Mode,
    token: Option<i64>,
    lease: Option<Duration>,
    /// Holds of the name on the server that this value releases: 1, or 2 for a leased
    /// lock that has a token (the lease and the fenced re-entrant grant on top of it).
    holds: u8,
    /// Set once the unlock has been handed to a task.
    released: bool,
    runtime: Handle,
}

struct Grant {
    token: Option<i64>,
    holds: u8,
}

/// A grant without a fencing token (of a plain lock call, `lock_named` …): one hold.
const UNFENCED: Grant = Grant {
    token: None,
    holds: 1,
};

impl NamedLock {
    /// Waits until the lock is granted, exclusively (`lock_named_fenced(name)`, or
    /// `lock_named(name)` where the server cannot hand out tokens; see [`token`](Self::token)).
    ///
    /// The wait honours the session's `lock_timeout` and `statement_timeout` and the
    /// deadlock detector, which then return their errors.
    pub async fn acquire(client: &Arc<Client>, name: &str) -> Result<NamedLock, Error> {
        held(detached(client, name, Kind::Exclusive, Wait::Forever).await)
    }

    /// Takes the lock exclusively if it is free, never waits (`try_lock_named_fenced(name)`):
    /// `None` when it is held elsewhere.
    pub async fn try_acquire(client: &Arc<Client>, name: &str) -> Result<Option<NamedLock>, Error> {
        detached(client, name, Kind::Exclusive, Wait::No).await
    }

    /// Waits at most `timeout` for the exclusive lock, on the server
    /// (`lock_named_fenced(name, timeout)`): `None` when the timeout passed, and then this
    /// session holds nothing it did not hold before. A zero timeout is a try.
    pub async fn acquire_timeout(
        client: &Arc<Client>,
        name: &str,
        timeout: Duration,
    ) -> Result<Option<NamedLock>, Error> {
        let wait = Wait::Timeout(micros(timeout));
        detached(client, name, Kind::Exclusive, wait).await
    }

    /// Waits until the lock is granted in shared mode (`lock_named_shared(name)`). Shared
    /// locks have no fencing token.
    pub async fn acquire_shared(client: &Arc<Client>, name: &str) -> Result<NamedLock, Error> {
        held(detached(client, name, Kind::Shared, Wait::Forever).await)
    }

    /// Takes the lock in shared mode unless it is held exclusively; never waits
    /// (`try_lock_named_shared(name)`).
    pub async fn try_acquire_shared(
        client: &Arc<Client>,
        name: &str,
    ) -> Result<Option<NamedLock>, Error> {
        detached(client, name, Kind::Shared, Wait::No).await
    }

    /// Waits at most `timeout` for the lock in shared mode (`lock_named_shared(name, timeout)`).
    pub async fn acquire_shared_timeout(
        client: &Arc<Client>,
        name: &str,
        timeout: Duration,
    ) -> Result<Option<NamedLock>, Error> {
        let wait = Wait::Timeout(micros(timeout));
        detached(client, name, Kind::Shared, wait).await
    }

    /// Waits until the lock is granted exclusively under a *lease* of `lease`
    /// (`lock_named_lease(name, lease)`, extension 0.3.0): if the session is idle when the
    /// lease has run out without a [`renew`](Self::renew), the server ends the session,
    /// which releases its locks. Renew well within the lease (every third of it, say).
    ///
    /// The lock is fenced as well: after the lease is granted, a re-entrant
    /// `lock_named_fenced(name)` gives the hold its token. The lease must be at least
    /// 1 second (else the server's error `22023`).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use pg_named_locks::{connect, NamedLock};
    /// # async fn step() -> bool { false }
    /// # async fn demo() -> Result<(), tokio_postgres::Error> {
    /// let client = connect("host=127.0.0.1 user=app dbname=app").await?;
    /// let lock = NamedLock::acquire_lease(&client, "nightly-export", Duration::from_secs(30)).await?;
    /// while step().await {
    ///     assert!(lock.renew().await?, "the lease is still ours");
    /// }
    /// lock.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn acquire_lease(
        client: &Arc<Client>,
        name: &str,
        lease: Duration,
    ) -> Result<NamedLock, Error> {
        held(detached(client, name, Kind::Leased(lease), Wait::Forever).await)
    }

    /// [`acquire_lease`](Self::acquire_lease) waiting at most `timeout`
    /// (`lock_named_lease(name, lease, timeout)`): `None` when the timeout passed. A zero
    /// timeout is a try.
    pub async fn acquire_lease_timeout(
        client: &Arc<Client>,
        name: &str,
        lease: Duration,
        timeout: Duration,
    ) -> Result<Option<NamedLock>, Error> {
        let wait = Wait::Timeout(micros(timeout));
        detached(client, name, Kind::Leased(lease), wait).await
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Exclusive or shared.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The fencing token of this grant: strictly greater than every token the server handed
    /// out before (see the extension's "Fencing tokens"). Store it with the data you write
    /// under the lock, and have the database check it (`named_lock_check(name, token)`,
    /// `named_lock_assert`), so that a holder that lost its lock cannot still write.
    ///
    /// `None` for shared locks, and for exclusive locks where the server cannot hand out
    /// tokens, which then take the plain lock instead: on a hot standby (fenced functions
    /// raise `25006` there), on PostgreSQL 15 and 16 when the extension is not in
    /// `shared_preload_libraries` (`55000`), and with an extension older than 0.2.0
    /// (`42883`). A re-entrant acquire returns the token of the session's current hold.
    pub fn token(&self) -> Option<i64> {
        self.token
    }

    /// The lease, for a lock from [`acquire_lease`](Self::acquire_lease).
    pub fn lease(&self) -> Option<Duration> {
        self.lease
    }

    /// The client (the session) that holds the lock.
    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    /// Starts the lease again at its length (`named_lock_renew(name)`): `false` when this
    /// session holds no leased lock of that name (a lock without a lease, or one whose
    /// lease already ended with its hold).
    pub async fn renew(&self) -> Result<bool, Error> {
        let row = one(&self.client, "SELECT named_lock_renew($1)", &self.name).await?;
        Ok(row.get::<_, bool>(0))
    }

    /// Unlocks now (`unlock_named(name)`, or `unlock_named_shared`) and returns the
    /// server's answer: `true`, or `false` when this session did not hold the lock
    /// (someone unlocked it behind this value's back, e.g. with `pg_advisory_unlock_all()`).
    /// Cancel-safe: the unlock runs to completion even if this future is dropped.
    ///
    /// An error (the connection is gone, say) means the unlock did not run; a closed
    /// connection has released the lock with its session.
    pub async fn release(mut self) -> Result<bool, Error> {
        self.released = true;
        let (client, name, mode, holds) = (
            Arc::clone(&self.client),
            std::mem::take(&mut self.name),
            self.mode,
            self.holds,
        );
        let task = self
            .runtime
            .spawn(async move { unlock(&client, &name, mode, holds).await });
        joined(task.await)
    }
}

impl Drop for NamedLock {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        self.released = true;
        let (client, name, mode, holds) = (
            Arc::clone(&self.client),
            std::mem::take(&mut self.name),
            self.mode,
            self.holds,
        );
        // Nobody awaits this task; it reports what the owner of the lock would want to know.
        self.runtime.spawn(async move {
            match unlock(&client, &name, mode, holds).await {
                Ok(true) => {}
                Ok(false) => eprintln!(
                    "pg_named_locks: {name:?} was not held when its NamedLock was dropped"
                ),
                // a closed connection has already released the lock with its session
                Err(e) if e.is_closed() => {}
                Err(e) => eprintln!(
                    "pg_named_locks: unlocking {name:?}: {}",
                    crate::describe(&e)
                ),
            }
        });
    }
}

impl fmt::Debug for NamedLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamedLock")
            .field("name", &self.name)
            .field("mode", &self.mode)
            .field("token", &self.token)
            .field("lease", &self.lease)
            .field("released", &self.released)
            .finish_non_exhaustive()
    }
}

/// Runs one lock call in its own task, so that a caller who stops waiting cannot separate
/// a granted lock from the value that releases it (see "Cancellation").
async fn detached(
    client: &Arc<Client>,
    name: &str,
    kind: Kind,
    wait: Wait,
) -> Result<Option<NamedLock>, Error> {
    let (c, n) = (Arc::clone(client), name.to_owned());
    let task = Handle::current().spawn(async move {
        let (mode, lease, granted) = match kind {
            Kind::Exclusive => (Mode::Exclusive, None, exclusive(&c, &n, wait).await?),
            Kind::Shared => (Mode::Shared, None, shared(&c, &n, wait).await?),
            Kind::Leased(l) => (Mode::Exclusive, Some(l), leased(&c, &n, l, wait).await?),
        };
        Ok(granted.map(|g| NamedLock {
            client: c,
            name: n,
            mode,
            token: g.token,
            lease,
            holds: g.holds,
            released: false,
            runtime: Handle::current(),
        }))
    });
    joined(task.await)
}

/// The lock of an acquire that waits without a timeout.
fn held(lock: Result<Option<NamedLock>, Error>) -> Result<NamedLock, Error> {
    lock.map(|l| l.expect("a lock call without a timeout returns only when it holds the lock"))
}

/// A task's result; its panic goes on in the caller.
fn joined<T>(r: Result<T, tokio::task::JoinError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("pg_named_locks: task cancelled (runtime shutting down): {e}"),
    }
}

/// One row of a statement with a text parameter, in one round trip (no prepare).
async fn one(c: &Client, sql: &str, name: &str) -> Result<Row, Error> {
    c.query_typed_one(sql, &[(&name, Type::TEXT)]).await
}

/// One row of a statement with a text and an int8 parameter.
async fn one2(c: &Client, sql: &str, name: &str, n: i64) -> Result<Row, Error> {
    let params: [(&(dyn ToSql + Sync), Type); 2] = [(&name, Type::TEXT), (&n, Type::INT8)];
    c.query_typed_one(sql, &params).await
}

/// Errors of a fenced call after which the plain lock call is made instead (nothing is
/// held after them): no token can be handed out here.
fn no_tokens_here(e: &Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::READ_ONLY_SQL_TRANSACTION       // hot standby
            || *c == SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE    // 15/16, not preloaded
            || *c == SqlState::UNDEFINED_FUNCTION // extension older than 0.2.0
    )
}

async fn exclusive(c: &Client, name: &str, wait: Wait) -> Result<Option<Grant>, Error> {
    let fenced = match wait {
        Wait::Forever => one(c, "SELECT lock_named_fenced($1)", name).await,
        Wait::No => one(c, "SELECT try_lock_named_fenced($1)", name).await,
        Wait::Timeout(us) => {
            one2(
                c,
                concat!("SELECT lock_named_fenced($1, ", interval!(2), ")"),
                name,
                us,
            )
            .await
        }
    };
    match fenced {
        Ok(row) => Ok(row.get::<_, Option<i64>>(0).map(|t| Grant {
            token: Some(t),
            holds: 1,
        })),
        Err(e) if no_tokens_here(&e) => Ok(plain(c, name, Mode::Exclusive, wait)
            .await?
            .then_some(UNFENCED)),
        Err(e) => Err(e),
    }
}

async fn shared(c: &Client, name: &str, wait: Wait) -> Result<Option<Grant>, Error> {
    Ok(plain(c, name, Mode::Shared, wait)
        .await?
        .then_some(UNFENCED))
}

/// `lock_named` / `try_lock_named` / `lock_named(name, timeout)` or the shared ones:
/// whether the lock was taken.
async fn plain(c: &Client, name: &str, mode: Mode, wait: Wait) -> Result<bool, Error> {
    let row = match (mode, wait) {
        (Mode::Exclusive, Wait::Forever) => {
            one(c, "SELECT lock_named($1)", name).await?;
            return Ok(true);
        }
        (Mode::Shared, Wait::Forever) => {
            one(c, "SELECT lock_named_shared($1)", name).await?;
            return Ok(true);
        }
        (Mode::Exclusive, Wait::No) => one(c, "SELECT try_lock_named($1)", name).await?,
        (Mode::Shared, Wait::No) => one(c, "SELECT try_lock_named_shared($1)", name).await?,
        (Mode::Exclusive, Wait::Timeout(us)) => {
            one2(
                c,
                concat!("SELECT lock_named($1, ", interval!(2), ")"),
                name,
                us,
            )
            .await?
        }
        (Mode::Shared, Wait::Timeout(us)) => {
            one2(
                c,
                concat!("SELECT lock_named_shared($1, ", interval!(2), ")"),
                name,
                us,
            )
            .await?
        }
    };
    Ok(row.get::<_, bool>(0))
}

async fn leased(
    c: &Client,
    name: &str,
    lease: Duration,
    wait: Wait,
) -> Result<Option<Grant>, Error> {
    let lease_us = micros(lease);
    let granted: bool = match wait {
        Wait::Forever => one2(
            c,
            concat!("SELECT lock_named_lease($1, ", interval!(2), ")"),
            name,
            lease_us,
        )
        .await?
        .get(0),
        Wait::No | Wait::Timeout(_) => {
            let us = if let Wait::Timeout(us) = wait { us } else { 0 };
            let params: [(&(dyn ToSql + Sync), Type); 3] = [
                (&name, Type::TEXT),
                (&lease_us, Type::INT8),
                (&us, Type::INT8),
            ];
            c.query_typed_one(
                concat!(
                    "SELECT lock_named_lease($1, ",
                    interval!(2),
                    ", ",
                    interval!(3),
                    ")"
                ),
                &params,
            )
            .await?
            .get(0)
        }
    };
    if !granted {
        return Ok(None);
    }
    // The lease covers every hold of the name by this session; a fenced call on a plain
    // hold gives that hold a token (re-entrant: granted at once).
    match one(c, "SELECT lock_named_fenced($1)", name).await {
        Ok(row) => Ok(Some(Grant {
            token: Some(row.get(0)),
            holds: 2,
        })),
        Err(e) if no_tokens_here(&e) => Ok(Some(UNFENCED)),
        Err(e) => {
            // nothing may stay held by a call that fails
            let _ = unlock(c, name, Mode::Exclusive, 1).await;
            Err(e)
        }
    }
}

async fn unlock(c: &Client, name: &str, mode: Mode, holds: u8) -> Result<bool, Error> {
    let sql = match (mode, holds) {
        (Mode::Exclusive, 1) => "SELECT unlock_named($1)",
        (Mode::Exclusive, _) => "SELECT unlock_named($1), unlock_named($1)",
        (Mode::Shared, _) => "SELECT unlock_named_shared($1)",
    };
    let row = one(c, sql, name).await?;
    Ok((0..row.len()).all(|i| row.get::<_, bool>(i)))
}
