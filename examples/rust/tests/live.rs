//! Against a live server, in a database where `CREATE EXTENSION pg_named_locks` was run:
//!   PGNL_TEST_DSN="host=127.0.0.1 port=5432 user=postgres dbname=postgres" cargo test
//! Every test uses its own lock names and its own connections; "held elsewhere" is
//! checked from another connection, on the server (`named_lock_holders`, `advisory_locks_v`).
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pg_named_locks_client::{connect, singleton, NamedLock, NamedLockGuard, Outcome};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

/// "promptly": a generous upper bound, never a timing assertion
const PROMPTLY: Duration = Duration::from_secs(10);

fn dsn() -> String {
    std::env::var("PGNL_TEST_DSN")
        .expect("set PGNL_TEST_DSN to a server with pg_named_locks installed (see tests/live.rs)")
}

async fn session() -> Arc<Client> {
    let c = connect(&dsn()).await.expect("connect");
    // A hung wait fails the test instead of hanging it. The extension is created by
    // whoever starts the server: concurrent CREATE EXTENSION IF NOT EXISTS can collide.
    c.batch_execute("SET statement_timeout = '30s'")
        .await
        .expect("session setup");
    c
}

fn unique(what: &str) -> String {
    format!("rust-example-{what}-{}", std::process::id())
}

async fn pid(c: &Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

async fn holders(c: &Client, name: &str) -> Vec<i32> {
    c.query_one("SELECT named_lock_holders($1)", &[&name])
        .await
        .unwrap()
        .get(0)
}

/// Retries `try_acquire` until it succeeds, for what happens after a drop (the unlock is
/// spawned, so it is not ordered with the next statement of another connection).
async fn take_promptly(c: &Arc<Client>, name: &str) -> NamedLockGuard {
    let deadline = Instant::now() + PROMPTLY;
    loop {
        if let Some(g) = NamedLock::try_acquire(c, name).await.unwrap() {
            return g;
        }
        assert!(
            Instant::now() < deadline,
            "{name} was not released within {PROMPTLY:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_releases_the_lock() {
    let (a, b) = (session().await, session().await);
    let name = unique("drop");
    let guard = NamedLock::acquire(&a, &name).await.unwrap();
    assert_eq!(guard.name(), name);
    assert_eq!(holders(&b, &name).await, vec![pid(&a).await]);
    assert!(
        NamedLock::try_acquire(&b, &name).await.unwrap().is_none(),
        "held by a"
    );

    drop(guard);
    let g = take_promptly(&b, &name).await;
    assert_eq!(
        holders(&a, &name).await,
        vec![pid(&b).await],
        "only b holds it now"
    );
    g.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_unlocks_before_returning() {
    let (a, b) = (session().await, session().await);
    let name = unique("release");
    let guard = NamedLock::acquire(&a, &name).await.unwrap();
    assert!(guard.release().await.unwrap(), "unlock_named answered true");
    // no retry: release() has completed the unlock on the server
    assert!(holders(&b, &name).await.is_empty());
    let g = NamedLock::try_acquire(&b, &name)
        .await
        .unwrap()
        .expect("free after release");
    g.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_returns_none_while_held_elsewhere() {
    let (a, b) = (session().await, session().await);
    let name = unique("timeout");
    let held = NamedLock::acquire(&a, &name).await.unwrap();
    let got = NamedLock::acquire_timeout(&b, &name, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(got.is_none(), "a holds it, so b's wait must time out");
    assert_eq!(
        holders(&b, &name).await,
        vec![pid(&a).await],
        "b was left holding nothing"
    );

    held.release().await.unwrap();
    let g = NamedLock::acquire_timeout(&b, &name, PROMPTLY)
        .await
        .unwrap();
    let g = g.expect("free now: granted within the timeout");
    assert_eq!(holders(&a, &name).await, vec![pid(&b).await]);
    g.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_waits_for_the_holder() {
    let (a, b, watch) = (session().await, session().await, session().await);
    let name = unique("wait");
    let held = NamedLock::acquire(&a, &name).await.unwrap();
    let b_pid = pid(&b).await;
    let waiter = {
        let (b, name) = (b.clone(), name.clone());
        tokio::spawn(async move { NamedLock::acquire(&b, &name).await })
    };
    // b is queued on the server behind a
    let deadline = Instant::now() + PROMPTLY;
    loop {
        let n: i64 = watch
            .query_one(
                "SELECT count(*) FROM advisory_locks_v WHERE lock_name = $1 AND pid = $2 AND NOT granted",
                &[&name, &b_pid],
            )
            .await
            .unwrap()
            .get(0);
        if n == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "b never showed up waiting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !waiter.is_finished(),
        "acquire returned while a held the lock"
    );

    held.release().await.unwrap();
    let g = tokio::time::timeout(PROMPTLY, waiter)
        .await
        .expect("granted promptly")
        .unwrap()
        .unwrap();
    assert_eq!(holders(&watch, &name).await, vec![b_pid]);
    g.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guards_count_like_the_lock() {
    // session locks are re-entrant and counted: each guard releases one count
    let (a, b) = (session().await, session().await);
    let name = unique("count");
    let g1 = NamedLock::acquire(&a, &name).await.unwrap();
    let g2 = NamedLock::try_acquire(&a, &name)
        .await
        .unwrap()
        .expect("re-entrant");
    assert!(g1.release().await.unwrap());
    assert!(
        NamedLock::try_acquire(&b, &name).await.unwrap().is_none(),
        "one count left"
    );
    assert!(g2.release().await.unwrap());
    let g = NamedLock::try_acquire(&b, &name)
        .await
        .unwrap()
        .expect("both counts released");
    g.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_acquire_does_not_leak_the_lock() {
    // A caller that stops waiting (client-side timeout) must not end up with a lock that
    // nobody will release once the server grants it later.
    let (a, b, c) = (session().await, session().await, session().await);
    let name = unique("abandon");
    let held = NamedLock::acquire(&a, &name).await.unwrap();
    let gave_up =
        tokio::time::timeout(Duration::from_millis(200), NamedLock::acquire(&b, &name)).await;
    assert!(gave_up.is_err(), "a holds it, so b cannot have got it");
    held.release().await.unwrap();
    // b's abandoned wait is granted on the server, then released by the dropped guard
    let g = take_promptly(&c, &name).await;
    assert!(!holders(&c, &name).await.contains(&pid(&b).await));
    g.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_the_sqlstate() {
    let a = session().await;
    let err = NamedLock::acquire(&a, "")
        .await
        .err()
        .expect("an empty name is an error");
    assert_eq!(
        err.code(),
        Some(&SqlState::INVALID_PARAMETER_VALUE),
        "{err}"
    );
    let err = NamedLock::try_acquire(&a, "")
        .await
        .err()
        .expect("an empty name is an error");
    assert_eq!(
        err.code(),
        Some(&SqlState::INVALID_PARAMETER_VALUE),
        "{err}"
    );
    // the session is still usable
    let g = NamedLock::try_acquire(&a, &unique("after-error"))
        .await
        .unwrap()
        .expect("free");
    g.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn singleton_has_exactly_one_winner() {
    let name = unique("singleton");
    let ran_inside = Arc::new(AtomicUsize::new(0));
    let counter = ran_inside.clone();
    let workers = 6;
    let outcomes = singleton(&dsn(), &name, workers, move |_, outcome| {
        if outcome == Outcome::Ran {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    })
    .await
    .unwrap();
    assert_eq!(outcomes.len(), workers);
    assert_eq!(
        outcomes.iter().filter(|o| **o == Outcome::Ran).count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(ran_inside.load(Ordering::SeqCst), 1);
    // the winner released it
    let a = session().await;
    assert!(holders(&a, &name).await.is_empty());
}
