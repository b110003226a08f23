//! pg_named_locks from Rust: a lock guard over tokio-postgres.
//!
//! ```no_run
//! use pg_named_locks_client::{connect, NamedLock};
//! # async fn demo() -> Result<(), tokio_postgres::Error> {
//! let client = connect("host=127.0.0.1 user=app dbname=app").await?;
//! if let Some(guard) = NamedLock::try_acquire(&client, "daily-report-job").await? {
//!     // ... the job: nobody else holds "daily-report-job" meanwhile ...
//!     guard.release().await?;
//! }
//! # Ok(()) }
//! ```
//!
//! # Releasing: `release().await` or drop
//!
//! A session lock belongs to the server connection, so unlocking is a query, and `Drop`
//! cannot await one. The guard therefore keeps an `Arc<Client>` and a handle to the
//! runtime it was acquired on, and its `Drop` *spawns* `unlock_named` on that runtime.
//! The trade-off:
//!
//! - After a drop the lock is still held until the spawned task has run (usually
//!   microseconds, but not ordered with what the caller does next), and an error of that
//!   unlock can only be reported to stderr.
//! - If the runtime is gone, nothing runs, but then the connection task is gone too, the
//!   session ends and PostgreSQL releases every lock of the session: a lock never outlives
//!   its connection.
//!
//! So prefer [`NamedLockGuard::release`]: when it returns, the lock is released (it
//! returns the server's answer), and dropping the guard remains the safety net for early
//! returns, `?` and panics. Both paths unlock exactly once.
//!
//! # Cancellation
//!
//! Every call runs its query in a spawned task and awaits it. If the caller stops waiting
//! (the future is dropped, e.g. by `tokio::time::timeout` or `select!`), the task goes on;
//! a lock granted after that is handed to no one, so its guard is dropped and unlocked at
//! once. Nothing is leaked, but the server keeps waiting for the lock meanwhile and the
//! client's other queries queue behind that wait: to bound a wait, use
//! [`NamedLock::acquire_timeout`], which gives up on the server.
//!
//! # Connection poolers
//!
//! Session locks need a dedicated server connection: behind a transaction-mode pooler
//! (PgBouncer `pool_mode = transaction`) use the extension's `xact_lock_named` inside a
//! transaction instead.

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio_postgres::{Client, Error, NoTls};

/// Connects without TLS and drives the connection on the current runtime.
pub async fn connect(dsn: &str) -> Result<Arc<Client>, Error> {
    let (client, connection) = tokio_postgres::connect(dsn, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("pg_named_locks_client: connection error: {e}");
        }
    });
    Ok(Arc::new(client))
}

/// Session-level named locks (`lock_named`, `try_lock_named`, `lock_named(text, interval)`).
/// Call these on a tokio runtime: the guard keeps a handle to it for the unlock.
pub struct NamedLock;

impl NamedLock {
    /// Waits until the lock is granted (`lock_named(name)`). The wait honours the
    /// session's `lock_timeout` and `statement_timeout` and the deadlock detector.
    pub async fn acquire(client: &Arc<Client>, name: &str) -> Result<NamedLockGuard, Error> {
        let got = run_detached(client, name, |c, n| async move {
            c.execute("SELECT lock_named($1)", &[&n])
                .await
                .map(|_| true)
        })
        .await?;
        Ok(got.expect("lock_named returns only when it holds the lock"))
    }

    /// Takes the lock if it is free, never waits (`try_lock_named(name)`).
    pub async fn try_acquire(
        client: &Arc<Client>,
        name: &str,
    ) -> Result<Option<NamedLockGuard>, Error> {
        run_detached(client, name, |c, n| async move {
            let row = c.query_one("SELECT try_lock_named($1)", &[&n]).await?;
            Ok(row.get::<_, bool>(0))
        })
        .await
    }

    /// Waits at most `timeout` (`lock_named(name, interval)`): `None` when it passed,
    /// and then this session holds nothing it did not hold before.
    pub async fn acquire_timeout(
        client: &Arc<Client>,
        name: &str,
        timeout: Duration,
    ) -> Result<Option<NamedLockGuard>, Error> {
        // the interval as whole microseconds, PostgreSQL's resolution
        let micros = i64::try_from(timeout.as_micros()).unwrap_or(i64::MAX);
        run_detached(client, name, move |c, n| async move {
            let row = c
                .query_one(
                    "SELECT lock_named($1, $2::bigint * interval '1 microsecond')",
                    &[&n, &micros],
                )
                .await?;
            Ok(row.get::<_, bool>(0))
        })
        .await
    }
}

/// Runs one lock query in its own task, so that a caller who stops waiting cannot
/// separate a granted lock from its guard (see "Cancellation" above).
async fn run_detached<F, Fut>(
    client: &Arc<Client>,
    name: &str,
    query: F,
) -> Result<Option<NamedLockGuard>, Error>
where
    F: FnOnce(Arc<Client>, String) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<bool, Error>> + Send + 'static,
{
    let handle = Handle::current();
    let (c, n) = (Arc::clone(client), name.to_owned());
    let task = handle.spawn(async move {
        let granted = query(Arc::clone(&c), n.clone()).await?;
        Ok(granted.then(|| NamedLockGuard {
            client: c,
            name: Some(n),
            runtime: Handle::current(),
        }))
    });
    joined(task.await)
}

/// A task's result; its panic goes on in the caller.
fn joined<T>(r: Result<T, tokio::task::JoinError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("pg_named_locks_client: task cancelled (runtime shutting down): {e}"),
    }
}

/// Holds one count of a session lock; unlocks it once, by [`release`](Self::release) or
/// on drop.
#[must_use = "the lock is released when the guard is dropped"]
pub struct NamedLockGuard {
    client: Arc<Client>,
    /// `None` once the unlock has been handed to a task.
    name: Option<String>,
    runtime: Handle,
}

impl NamedLockGuard {
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }

    /// Unlocks now (`unlock_named(name)`) and returns the server's answer: `true`, or
    /// `false` when this session did not hold the lock (someone unlocked it behind the
    /// guard's back). Cancel-safe: the unlock runs to completion even if this future is
    /// dropped.
    pub async fn release(mut self) -> Result<bool, Error> {
        let name = self.name.take().expect("an unreleased guard has a name");
        let task = self.runtime.spawn(unlock(Arc::clone(&self.client), name));
        joined(task.await)
    }
}

async fn unlock(client: Arc<Client>, name: String) -> Result<bool, Error> {
    let row = client
        .query_one("SELECT unlock_named($1)", &[&name])
        .await?;
    Ok(row.get::<_, bool>(0))
}

impl Drop for NamedLockGuard {
    fn drop(&mut self) {
        let Some(name) = self.name.take() else { return };
        let client = Arc::clone(&self.client);
        // Nobody awaits this task; it reports what the owner of the guard would want to know.
        self.runtime.spawn(async move {
            match unlock(client, name.clone()).await {
                Ok(true) => {}
                Ok(false) => eprintln!("pg_named_locks_client: {name:?} was not held at drop"),
                // a closed connection has already released the lock with its session
                Err(e) if e.is_closed() => {}
                Err(e) => eprintln!("pg_named_locks_client: unlocking {name:?}: {e}"),
            }
        });
    }
}

/// The outcome of one worker of [`singleton`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ran,
    AlreadyRunning,
}

/// `workers` tasks, each with its own connection, all try to start the job `name` at
/// the same moment. The one that gets the lock calls `worker(i, Outcome::Ran)` while
/// holding it (that is the job); the others call `worker(i, Outcome::AlreadyRunning)`.
/// Barriers make the demonstration deterministic: every attempt happens while the
/// winner still holds the lock.
pub async fn singleton<F>(
    dsn: &str,
    name: &str,
    workers: usize,
    worker: F,
) -> Result<Vec<Outcome>, Error>
where
    F: Fn(usize, Outcome) + Send + Sync + 'static,
{
    // Connect first, so a connection error cannot strand the others at a barrier.
    let mut clients = Vec::with_capacity(workers);
    for _ in 0..workers {
        clients.push(connect(dsn).await?);
    }
    let start = Arc::new(tokio::sync::Barrier::new(workers));
    let tried = Arc::new(tokio::sync::Barrier::new(workers));
    let worker = Arc::new(worker);
    let mut tasks = Vec::with_capacity(workers);
    for (i, client) in clients.into_iter().enumerate() {
        let (start, tried, worker, name) = (
            start.clone(),
            tried.clone(),
            worker.clone(),
            name.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let attempt = NamedLock::try_acquire(&client, &name).await;
            tried.wait().await;
            match attempt? {
                Some(guard) => {
                    worker(i, Outcome::Ran);
                    guard.release().await?;
                    Ok(Outcome::Ran)
                }
                None => {
                    worker(i, Outcome::AlreadyRunning);
                    Ok(Outcome::AlreadyRunning)
                }
            }
        }));
    }
    let mut outcomes = Vec::with_capacity(workers);
    for task in tasks {
        outcomes.push(joined(task.await)?);
    }
    Ok(outcomes)
}
