//! Against a live server, in a database where `CREATE EXTENSION pg_named_locks` was run:
//!   PGNL_TEST_DSN="host=127.0.0.1 port=5432 user=postgres dbname=postgres" cargo test
//! The lock value itself (drop, release, tokens, leases, transaction locks) is tested with
//! the crate, in clients/rust/client/tests.
use std::sync::{Arc, Mutex};

use pg_named_locks_example::{connect, singleton, NamedLock, Outcome};

fn dsn() -> String {
    std::env::var("PGNL_TEST_DSN")
        .expect("set PGNL_TEST_DSN to a server with pg_named_locks installed (see tests/live.rs)")
}

fn unique(what: &str) -> String {
    format!("rust-example-{what}-{}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn singleton_has_exactly_one_winner() {
    let name = unique("singleton");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let workers = 6;
    let outcomes = singleton(&dsn(), &name, workers, move |i, outcome| {
        record.lock().unwrap().push((i, outcome));
    })
    .await
    .unwrap();
    assert_eq!(outcomes.len(), workers);
    let winners: Vec<_> = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Ran { .. }))
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    assert!(
        matches!(winners[0], Outcome::Ran { token: Some(_) }),
        "the winner's lock is fenced: {outcomes:?}"
    );
    assert_eq!(seen.lock().unwrap().len(), workers, "every worker was told");
    // the winner released it
    let client = connect(&dsn()).await.unwrap();
    let holders: Vec<i32> = client
        .query_one("SELECT named_lock_holders($1)", &[&name])
        .await
        .unwrap()
        .get(0);
    assert!(holders.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reexported_lock_works() {
    let (a, b) = (
        connect(&dsn()).await.unwrap(),
        connect(&dsn()).await.unwrap(),
    );
    let name = unique("reexport");
    let lock = NamedLock::acquire(&a, &name).await.unwrap();
    assert!(NamedLock::try_acquire(&b, &name).await.unwrap().is_none());
    assert!(lock.release().await.unwrap());
    let again = NamedLock::try_acquire(&b, &name)
        .await
        .unwrap()
        .expect("free");
    again.release().await.unwrap();
}
