//! The singleton-job example, built on the `pg-named-locks` client crate
//! (`clients/rust/client` in this repository: the lock value, its fencing token, the
//! trade-offs of unlocking from `Drop`, transaction locks).
//!
//! ```no_run
//! use pg_named_locks_example::{connect, NamedLock};
//! # async fn demo() -> Result<(), tokio_postgres::Error> {
//! let client = connect("host=127.0.0.1 user=app dbname=app").await?;
//! if let Some(lock) = NamedLock::try_acquire(&client, "daily-report-job").await? {
//!     // ... the job: nobody else holds "daily-report-job" meanwhile ...
//!     lock.release().await?;
//! }
//! # Ok(()) }
//! ```

use std::sync::Arc;

pub use pg_named_locks::{connect, NamedLock};
use tokio_postgres::Error;

/// The outcome of one worker of [`singleton`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// This worker got the lock and ran the job; its fencing token, if the server hands
    /// out tokens.
    Ran {
        token: Option<i64>,
    },
    AlreadyRunning,
}

/// `workers` tasks, each with its own connection, all try to start the job `name` at
/// the same moment. The one that gets the lock calls `worker(i, Outcome::Ran { .. })`
/// while holding it (that is the job); the others call `worker(i, Outcome::AlreadyRunning)`.
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
                Some(lock) => {
                    let outcome = Outcome::Ran {
                        token: lock.token(),
                    };
                    worker(i, outcome);
                    lock.release().await?;
                    Ok(outcome)
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
        match task.await {
            Ok(outcome) => outcomes.push(outcome?),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("singleton: worker task cancelled: {e}"),
        }
    }
    Ok(outcomes)
}
