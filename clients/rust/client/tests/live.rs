//! Against a live server, in a database where `CREATE EXTENSION pg_named_locks` was run
//! (preloaded, extension 0.3.0):
//!   PGNL_TEST_DSN="host=127.0.0.1 port=5432 user=postgres dbname=postgres" cargo test
//! Every test uses its own lock names and its own connections; "held elsewhere" is
//! checked from another connection, on the server (`named_lock_holders`, `advisory_locks_v`).
use std::sync::Arc;
use std::time::{Duration, Instant};

use pg_named_locks::{connect, key, key32, xact, Mode, NamedLock};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSqlOwned, ToSql};
use tokio_postgres::{Client, NoTls};

/// "promptly": a generous upper bound, never a timing assertion
const PROMPTLY: Duration = Duration::from_secs(10);

fn dsn() -> String {
    std::env::var("PGNL_TEST_DSN")
        .expect("set PGNL_TEST_DSN to a server with pg_named_locks installed (see tests/live.rs)")
}

async fn session() -> Arc<Client> {
    let c = connect(&dsn()).await.expect("connect");
    // A hung wait fails the test instead of hanging it.
    c.batch_execute("SET statement_timeout = '30s'")
        .await
        .expect("session setup");
    c
}

fn unique(what: &str) -> String {
    format!("rust-client-{what}-{}", std::process::id())
}

/// The value of a query that returns one row of one column.
async fn value<T: FromSqlOwned>(c: &Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> T {
    c.query_one(sql, params).await.unwrap().get(0)
}

async fn pid(c: &Client) -> i32 {
    value(c, "SELECT pg_backend_pid()", &[]).await
}

async fn holders(c: &Client, name: &str) -> Vec<i32> {
    value(c, "SELECT named_lock_holders($1)", &[&name]).await
}

async fn check(c: &Client, name: &str, token: i64) -> bool {
    value(c, "SELECT named_lock_check($1, $2)", &[&name, &token]).await
}

/// Retries `try_acquire` until it succeeds, for what happens after a drop (the unlock is
/// spawned, so it is not ordered with the next statement of another connection).
async fn take_promptly(c: &Arc<Client>, name: &str) -> NamedLock {
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
    let lock = NamedLock::acquire(&a, &name).await.unwrap();
    assert_eq!(lock.name(), name);
    assert_eq!(lock.mode(), Mode::Exclusive);
    assert_eq!(holders(&b, &name).await, vec![pid(&a).await]);
    assert!(
        NamedLock::try_acquire(&b, &name).await.unwrap().is_none(),
        "held by a"
    );

    drop(lock);
    let g = take_promptly(&b, &name).await;
    assert_eq!(holders(&a, &name).await, vec![pid(&b).await]);
    g.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_unlocks_before_returning() {
    let (a, b) = (session().await, session().await);
    let name = unique("release");
    let lock = NamedLock::acquire(&a, &name).await.unwrap();
    assert!(lock.release().await.unwrap(), "unlock_named answered true");
    // no retry: release() has completed the unlock on the server
    assert!(holders(&b, &name).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_locks_carry_a_fencing_token() {
    let (a, b) = (session().await, session().await);
    let name = unique("token");
    let first = NamedLock::acquire(&a, &name).await.unwrap();
    let t1 = first.token().expect("a fenced grant");
    assert!(check(&b, &name, t1).await, "valid while held");
    let server: Option<i64> = value(&a, "SELECT named_lock_token($1)", &[&name]).await;
    assert_eq!(server, Some(t1));
    first.release().await.unwrap();
    assert!(!check(&b, &name, t1).await, "invalid once released");

    let second = NamedLock::try_acquire(&b, &name).await.unwrap().unwrap();
    let t2 = second.token().unwrap();
    assert!(t2 > t1, "tokens grow: {t2} after {t1}");
    second.release().await.unwrap();

    let third = NamedLock::acquire_timeout(&a, &name, PROMPTLY)
        .await
        .unwrap()
        .unwrap();
    assert!(third.token().unwrap() > t2);
    third.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_returns_none_while_held_elsewhere() {
    let (a, b) = (session().await, session().await);
    let name = unique("timeout");
    let held = NamedLock::acquire(&a, &name).await.unwrap();
    let started = Instant::now();
    let got = NamedLock::acquire_timeout(&b, &name, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(got.is_none(), "a holds it, so b's wait must time out");
    assert!(started.elapsed() >= Duration::from_millis(290));
    assert_eq!(
        holders(&b, &name).await,
        vec![pid(&a).await],
        "b was left holding nothing"
    );
    held.release().await.unwrap();
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
    let deadline = Instant::now() + PROMPTLY;
    loop {
        let n: i64 = value(
            &watch,
            "SELECT count(*) FROM advisory_locks_v WHERE lock_name = $1 AND pid = $2 AND NOT granted",
            &[&name, &b_pid],
        )
        .await;
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
async fn locks_count_like_the_server() {
    // session locks are re-entrant and counted: each value releases one count; the
    // re-entrant fenced grant returns the hold's token
    let (a, b) = (session().await, session().await);
    let name = unique("count");
    let g1 = NamedLock::acquire(&a, &name).await.unwrap();
    let g2 = NamedLock::try_acquire(&a, &name)
        .await
        .unwrap()
        .expect("re-entrant");
    assert_eq!(g1.token(), g2.token());
    assert!(g1.release().await.unwrap());
    assert!(
        NamedLock::try_acquire(&b, &name).await.unwrap().is_none(),
        "one count left"
    );
    assert!(g2.release().await.unwrap());
    let g = NamedLock::try_acquire(&b, &name)
        .await
        .unwrap()
        .expect("both released");
    g.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_locks_share_and_exclude() {
    let (a, b, c) = (session().await, session().await, session().await);
    let name = unique("shared");
    let sa = NamedLock::acquire_shared(&a, &name).await.unwrap();
    let sb = NamedLock::try_acquire_shared(&b, &name)
        .await
        .unwrap()
        .expect("shared with a");
    assert_eq!(sa.mode(), Mode::Shared);
    assert_eq!(sa.token(), None, "shared locks have no token");
    assert!(
        NamedLock::try_acquire(&c, &name).await.unwrap().is_none(),
        "exclusive excluded"
    );
    assert!(sa.release().await.unwrap());
    assert!(sb.release().await.unwrap());
    let x = NamedLock::acquire(&c, &name).await.unwrap();
    assert!(
        NamedLock::acquire_shared_timeout(&a, &name, Duration::from_millis(100))
            .await
            .unwrap()
            .is_none(),
        "shared excluded by exclusive"
    );
    x.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leased_locks_renew_and_keep_a_token() {
    let (a, b) = (session().await, session().await);
    let name = unique("lease");
    let lock = NamedLock::acquire_lease(&a, &name, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(lock.lease(), Some(Duration::from_secs(1)));
    let token = lock.token().expect("leased locks are fenced too");
    // renewed for 2.5 leases: the server would have ended the idle session otherwise
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(lock.renew().await.unwrap());
    }
    assert!(check(&b, &name, token).await);
    let expires: Option<bool> = value(
        &b,
        "SELECT bool_and(lease_expires_at > now()) FROM advisory_locks_v WHERE lock_name = $1",
        &[&name],
    )
    .await;
    assert_eq!(expires, Some(true));
    assert!(
        NamedLock::acquire_lease_timeout(&b, &name, Duration::from_secs(5), Duration::ZERO)
            .await
            .unwrap()
            .is_none(),
        "held"
    );
    assert!(lock.release().await.unwrap(), "both holds released");
    assert!(holders(&b, &name).await.is_empty());
    let renewed: bool = value(&a, "SELECT named_lock_renew($1)", &[&name]).await;
    assert!(!renewed, "the lease ended with the lock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrenewed_lease_ends_the_session() {
    let (a, b) = (session().await, session().await);
    let name = unique("lease-expiry");
    let lock = NamedLock::acquire_lease(&a, &name, Duration::from_secs(1))
        .await
        .unwrap();
    let deadline = Instant::now() + PROMPTLY;
    while !holders(&b, &name).await.is_empty() {
        assert!(Instant::now() < deadline, "the lease never ran out");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let err = lock.renew().await.expect_err("the session is gone");
    assert!(err.is_closed() || err.code().is_some(), "{err}");
    drop(lock); // the spawned unlock finds the connection closed and says nothing
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
    let g = take_promptly(&c, &name).await;
    assert!(!holders(&c, &name).await.contains(&pid(&b).await));
    g.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_the_sqlstate() {
    let a = session().await;
    let err = NamedLock::acquire(&a, "").await.expect_err("an empty name");
    assert_eq!(
        err.code(),
        Some(&SqlState::INVALID_PARAMETER_VALUE),
        "{err}"
    );
    let err = NamedLock::try_acquire_shared(&a, "")
        .await
        .expect_err("an empty name");
    assert_eq!(
        err.code(),
        Some(&SqlState::INVALID_PARAMETER_VALUE),
        "{err}"
    );
    let err = NamedLock::acquire_lease(&a, &unique("short"), Duration::from_millis(10))
        .await
        .expect_err("a lease under 1 s");
    assert_eq!(
        err.code(),
        Some(&SqlState::INVALID_PARAMETER_VALUE),
        "{err}"
    );
    let g = NamedLock::try_acquire(&a, &unique("after-error"))
        .await
        .unwrap()
        .expect("the session is still usable");
    g.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_locks_end_with_the_transaction() {
    let (mut a, b) = {
        let (client, connection) = tokio_postgres::connect(&dsn(), NoTls).await.unwrap();
        tokio::spawn(connection);
        (client, session().await)
    };
    let (one, two) = (unique("xact-1"), unique("xact-2"));
    let tx = a.transaction().await.unwrap();
    xact::lock(&tx, &one).await.unwrap();
    assert!(xact::try_lock(&tx, &one).await.unwrap(), "re-entrant");
    xact::lock_many(&tx, &[two.as_str(), one.as_str()])
        .await
        .unwrap();
    let a_pid: i32 = tx
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(holders(&b, &one).await, vec![a_pid]);
    assert_eq!(holders(&b, &two).await, vec![a_pid]);
    tx.commit().await.unwrap();
    assert!(holders(&b, &one).await.is_empty(), "COMMIT released it");
    assert!(holders(&b, &two).await.is_empty());

    // a busy lock: try is false, the timeout passes, the transaction goes on
    let held = NamedLock::acquire(&b, &one).await.unwrap();
    let tx = a.transaction().await.unwrap();
    assert!(!xact::try_lock(&tx, &one).await.unwrap());
    assert!(!xact::lock_timeout(&tx, &one, Duration::from_millis(100))
        .await
        .unwrap());
    assert!(!xact::try_lock_many(&tx, &[two.as_str(), one.as_str()])
        .await
        .unwrap());
    assert!(holders(&b, &two).await.is_empty(), "all or nothing");
    assert!(xact::try_lock_shared(&tx, &two).await.unwrap());
    assert_eq!(xact::try_lock_fenced(&tx, &one).await.unwrap(), None);
    tx.rollback().await.unwrap();
    held.release().await.unwrap();

    let tx = a.transaction().await.unwrap();
    let token = xact::lock_fenced(&tx, &one).await.unwrap();
    assert!(check(&b, &one, token).await);
    xact::lock_shared(&tx, &two).await.unwrap();
    tx.commit().await.unwrap();
    assert!(
        !check(&b, &one, token).await,
        "the token ended with the transaction"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_equal_the_servers() {
    let a = session().await;
    for name in [
        "",
        "a",
        "daily-report-job",
        "日本語",
        "naïve café",
        "🔒 lock",
        &"x".repeat(1000),
    ] {
        let row = a
            .query_one("SELECT named_lock_key($1), named_lock_key32($1)", &[&name])
            .await
            .unwrap();
        assert_eq!(key(name), row.get::<_, i64>(0), "{name:?}");
        assert_eq!(key32(name), row.get::<_, i32>(1), "{name:?}");
    }
    let (k1, k2) = pg_named_locks::pair_key("account", "a");
    let tx_key: (i32, i32) = {
        let r = a
            .query_one(
                "SELECT named_lock_key32('account'), named_lock_key32('a')",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((k1, k2), tx_key);
}
