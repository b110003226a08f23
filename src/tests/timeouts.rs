//! Multi-session tests for per-call timeouts, `_many`, statistics and the session cap.

use postgres::error::SqlState;
use postgres::Client;
use std::thread;
use std::time::Duration;

use super::multisession::{boolean, held, pid, session, sqlstate, wait_until_waiting};

fn one_i64(c: &mut Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn timeout_returns_false_and_leaves_nothing() {
    let mut a = session();
    let mut b = session();
    let bpid = pid(&mut b);
    a.execute("SELECT lock_named('mt-to'), lock_pair('mt-to', 1)", &[]).unwrap();
    b.batch_execute("SET lock_timeout = '7s'").unwrap();
    for sql in [
        "SELECT lock_named('mt-to', '150ms')",
        "SELECT lock_named_shared('mt-to', '150ms')",
        "SELECT xact_lock_named('mt-to', '150ms')",
        "SELECT lock_pair('mt-to', 1, '150ms')",
        "SELECT xact_lock_pair_shared('mt-to', 1, '150ms')",
        "SELECT lock_many(ARRAY['mt-to-free', 'mt-to'], '150ms')",
        "SELECT xact_lock_many(ARRAY['mt-to-free', 'mt-to'], '150ms')",
        "SELECT lock_named('mt-to', '0')",
    ] {
        assert!(!boolean(&mut b, sql), "{sql} returned true");
        assert_eq!(held(&mut a, bpid), 0, "{sql} left a lock behind");
    }
    let lt: String = b.query_one("SHOW lock_timeout", &[]).unwrap().get(0);
    assert_eq!(lt, "7s", "the caller's lock_timeout was changed");
}

#[test]
fn timeout_succeeds_when_released_in_time() {
    let mut a = session();
    let mut b = session();
    let mut obs = session();
    let bpid = pid(&mut b);
    a.execute("SELECT lock_named('mt-ok'), lock_named('mt-ok-2')", &[]).unwrap();
    let waiter = thread::spawn(move || {
        let got = boolean(&mut b, "SELECT lock_many(ARRAY['mt-ok', 'mt-ok-2', 'mt-ok-3'], '30s')");
        (b, got)
    });
    wait_until_waiting(&mut obs, bpid);
    a.execute("SELECT unlock_named('mt-ok')", &[]).unwrap();
    wait_until_waiting(&mut obs, bpid); // now waiting for the second one
    a.execute("SELECT unlock_named('mt-ok-2')", &[]).unwrap();
    let (mut b, got) = waiter.join().unwrap();
    assert!(got);
    assert_eq!(held(&mut obs, bpid), 3);
    assert_eq!(one_i64(&mut b, "SELECT unlock_many(ARRAY['mt-ok', 'mt-ok-2', 'mt-ok-3'])::int8"), 3);
}

/// Race the release against the deadline many times: whatever the outcome, the result
/// must say exactly whether the lock is held.
#[test]
fn timeout_result_always_matches_what_is_held() {
    let mut a = session();
    let mut b = session();
    let bpid = pid(&mut b);
    let (mut got_true, mut got_false) = (0, 0);
    for i in 0..30u64 {
        a.execute("SELECT lock_named('mt-edge')", &[]).unwrap();
        let releaser = thread::spawn(move || {
            // release around the waiter's 40 ms deadline, a little earlier or later
            thread::sleep(Duration::from_millis(30 + (i % 5) * 5));
            a.execute("SELECT unlock_named('mt-edge')", &[]).unwrap();
            a
        });
        let got = boolean(&mut b, "SELECT lock_named('mt-edge', '40ms')");
        a = releaser.join().unwrap();
        let holds = held(&mut a, bpid);
        assert_eq!(holds, got as i64, "iteration {i}: returned {got} but holds {holds}");
        if got {
            got_true += 1;
            assert!(boolean(&mut b, "SELECT unlock_named('mt-edge')"));
        } else {
            got_false += 1;
        }
    }
    eprintln!("edge race: {got_true} acquired, {got_false} timed out");
}

#[test]
fn cancel_and_statement_timeout_during_timeout_wait() {
    let mut a = session();
    let mut b = session();
    let mut obs = session();
    let bpid = pid(&mut b);
    a.execute("SELECT lock_named('mt-cancel')", &[]).unwrap();
    b.batch_execute("SET statement_timeout = '200ms'").unwrap();
    let e = b.execute("SELECT lock_many(ARRAY['mt-cancel-a', 'mt-cancel'], '30s')", &[]).unwrap_err();
    assert_eq!(sqlstate(&e), SqlState::QUERY_CANCELED);
    assert_eq!(held(&mut obs, bpid), 0);
    b.batch_execute("SET statement_timeout = '60s'").unwrap();
    let cancel = b.cancel_token();
    let waiter = thread::spawn(move || {
        let r = b.execute("SELECT lock_named('mt-cancel', '30s')", &[]);
        (b, r.map(|_| ()).map_err(|e| sqlstate(&e)))
    });
    wait_until_waiting(&mut obs, bpid);
    cancel.cancel_query(postgres::NoTls).unwrap();
    let (mut b, r) = waiter.join().unwrap();
    assert_eq!(r, Err(SqlState::QUERY_CANCELED));
    assert_eq!(held(&mut obs, bpid), 0, "a cancelled wait left a lock behind");
    // the session is usable and its lock_timeout untouched
    let lt: String = b.query_one("SHOW lock_timeout", &[]).unwrap().get(0);
    assert_eq!(lt, "30s");
}

#[test]
fn deadlock_detected_during_timeout_waits() {
    let mut a = session();
    let mut b = session();
    let mut obs = session();
    let apid = pid(&mut a);
    a.execute("SELECT lock_named('mt-dl-a')", &[]).unwrap();
    b.execute("SELECT lock_named('mt-dl-b')", &[]).unwrap();
    let cross = |mut c: Client, want: &'static str, release: &'static str| {
        thread::spawn(move || {
            let r = c.query_one(want, &[]).map(|r| r.get::<_, bool>(0)).map_err(|e| sqlstate(&e));
            if r.is_err() {
                c.execute(release, &[]).unwrap();
            }
            r
        })
    };
    let ta = cross(a, "SELECT lock_named('mt-dl-b', '30s')", "SELECT unlock_named('mt-dl-a')");
    wait_until_waiting(&mut obs, apid);
    let tb = cross(b, "SELECT lock_named('mt-dl-a', '30s')", "SELECT unlock_named('mt-dl-b')");
    let results = [ta.join().unwrap(), tb.join().unwrap()];
    assert!(results.contains(&Err(SqlState::T_R_DEADLOCK_DETECTED)), "{results:?}");
    assert!(results.contains(&Ok(true)), "{results:?}");
}

/// Transfers between random pairs of accounts, each locking both accounts with
/// xact_lock_many before touching the rows: no deadlock, money conserved.
#[test]
fn transfers_with_xact_lock_many_never_deadlock() {
    let mut setup = session();
    setup
        .batch_execute(
            "DROP TABLE IF EXISTS mt_accounts;
             CREATE TABLE mt_accounts (id int PRIMARY KEY, balance bigint NOT NULL);
             INSERT INTO mt_accounts SELECT g, 1000 FROM generate_series(1, 8) g;",
        )
        .unwrap();
    let workers: Vec<_> = (0..6u64)
        .map(|w| {
            thread::spawn(move || {
                let mut c = session();
                c.batch_execute("SET deadlock_timeout = '50ms'").unwrap();
                let mut seed = w * 7919 + 13;
                let mut next = move || {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (seed >> 33) as i32
                };
                for _ in 0..40 {
                    let from = next().rem_euclid(8) + 1;
                    let to = (from + next().rem_euclid(7)) % 8 + 1;
                    let amount = next().rem_euclid(50) as i64;
                    // rows are updated in (from, to) order, which differs between
                    // transfers: without the advisory locks this order deadlocks
                    let mut tx = c.transaction().unwrap();
                    tx.execute("SELECT xact_lock_many(ARRAY['mt-acct-' || $1::int, 'mt-acct-' || $2::int])", &[&from, &to])
                        .unwrap();
                    tx.execute("UPDATE mt_accounts SET balance = balance - $2 WHERE id = $1", &[&from, &amount]).unwrap();
                    thread::sleep(Duration::from_millis(1));
                    tx.execute("UPDATE mt_accounts SET balance = balance + $2 WHERE id = $1", &[&to, &amount]).unwrap();
                    tx.commit().unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a transfer failed (deadlock?)");
    }
    assert_eq!(one_i64(&mut setup, "SELECT sum(balance)::int8 FROM mt_accounts"), 8000);
}

#[test]
fn statistics_after_contention() {
    let mut a = session();
    let mut b = session();
    let mut obs = session();
    let bpid = pid(&mut b);
    a.execute("SELECT lock_named('mt-stats')", &[]).unwrap(); // immediate
    assert!(!boolean(&mut b, "SELECT try_lock_named('mt-stats')")); // try failure
    assert!(!boolean(&mut b, "SELECT lock_named('mt-stats', '50ms')")); // timeout
    let waiter = thread::spawn(move || {
        b.execute("SELECT lock_named('mt-stats')", &[]).unwrap(); // a wait
        b
    });
    wait_until_waiting(&mut obs, bpid);
    thread::sleep(Duration::from_millis(100));
    a.execute("SELECT unlock_named('mt-stats')", &[]).unwrap();
    let _b = waiter.join().unwrap();
    let r = obs
        .query_one(
            "SELECT acquisitions, immediate_acquisitions, waits, try_failures, timeouts,
                    total_wait_ms >= 100 AND max_wait_ms = total_wait_ms, last_acquired IS NOT NULL
               FROM named_lock_stats WHERE lock_name = 'mt-stats'",
            &[],
        )
        .unwrap();
    let counts: Vec<i64> = (0..5).map(|i| r.get(i)).collect();
    assert_eq!(counts, vec![2, 1, 1, 1, 1]);
    assert!(r.get::<_, bool>(5), "wait time not recorded");
    assert!(r.get::<_, bool>(6));
}

#[test]
fn session_cap_fails_before_locking() {
    let mut a = session();
    let apid = pid(&mut a);
    a.batch_execute("SET pg_named_locks.max_locks_per_session = 3").unwrap();
    a.execute("SELECT lock_named('mt-cap-1'), lock_named('mt-cap-2'), lock_pair('mt-cap', 3)", &[]).unwrap();
    let e = a.execute("SELECT lock_named('mt-cap-4')", &[]).unwrap_err();
    assert_eq!(sqlstate(&e), SqlState::CONFIGURATION_LIMIT_EXCEEDED);
    let e = a.execute("SELECT try_lock_named('mt-cap-4')", &[]).unwrap_err();
    assert_eq!(sqlstate(&e), SqlState::CONFIGURATION_LIMIT_EXCEEDED);
    assert!(boolean(&mut a, "SELECT try_lock_named('mt-cap-1')"), "re-locking a held lock is allowed");
    let mut obs = session();
    assert_eq!(held(&mut obs, apid), 3);
    assert!(boolean(&mut a, "SELECT unlock_named('mt-cap-2')"));
    assert!(boolean(&mut a, "SELECT try_lock_named('mt-cap-5')"), "room again after an unlock");
    a.batch_execute("SELECT pg_advisory_unlock_all(); SET pg_named_locks.max_locks_per_session = 0").unwrap();
    assert!(boolean(&mut a, "SELECT try_lock_many(ARRAY['x1','x2','x3','x4','x5'])"), "0 = no cap");
}
