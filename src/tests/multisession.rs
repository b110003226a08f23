//! Tests with several real sessions against the `cargo pgrx test` server. Each test uses
//! its own lock names because the tests of this binary run in parallel on one server.
//! Nothing can hang: every session has a lock_timeout/statement_timeout well below the
//! test harness's patience, and waits are polled with a bound.

use postgres::error::SqlState;
use postgres::Client;
use std::thread;
use std::time::{Duration, Instant};

pub(crate) fn session() -> Client {
    // The framework starts the server (once per test binary) when a #[pg_test] runs.
    pgrx_tests::run_test("key_known_value", None, crate::pg_test::postgresql_conf_options()).expect("test framework");
    let (mut c, _) = pgrx_tests::client().expect("connect");
    c.batch_execute("SET lock_timeout = '30s'; SET statement_timeout = '60s'").unwrap();
    c
}

pub(crate) fn boolean(c: &mut Client, sql: &str) -> bool {
    c.query_one(sql, &[]).unwrap().get(0)
}

pub(crate) fn pid(c: &mut Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0)
}

/// Advisory locks `pid` holds (granted) right now.
pub(crate) fn held(observer: &mut Client, pid: i32) -> i64 {
    observer
        .query_one("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1 AND granted", &[&pid])
        .unwrap()
        .get(0)
}

/// Poll until `pid` waits for an advisory lock; panics after 20 s.
pub(crate) fn wait_until_waiting(observer: &mut Client, pid: i32) {
    let start = Instant::now();
    loop {
        let n: i64 = observer
            .query_one("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1 AND NOT granted", &[&pid])
            .unwrap()
            .get(0);
        if n > 0 {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "pid {pid} never started waiting");
        thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn sqlstate(e: &postgres::Error) -> SqlState {
    e.code().cloned().unwrap_or_else(|| panic!("not a server error: {e}"))
}

#[test]
fn same_tag_as_builtins() {
    let mut a = session();
    let mut b = session();
    a.execute("SELECT lock_named('ms-tag')", &[]).unwrap();
    assert!(!boolean(&mut b, "SELECT pg_try_advisory_lock(named_lock_key('ms-tag'))"));
    assert!(!boolean(&mut b, "SELECT pg_try_advisory_lock_shared(named_lock_key('ms-tag'))"));
    assert!(boolean(&mut a, "SELECT unlock_named('ms-tag')"));
    assert!(boolean(&mut b, "SELECT pg_try_advisory_lock(named_lock_key('ms-tag'))"));
    // and the other way round: the built-in excludes the named lock
    assert!(!boolean(&mut a, "SELECT try_lock_named('ms-tag')"));
    assert!(boolean(&mut b, "SELECT pg_advisory_unlock(named_lock_key('ms-tag'))"));

    // pair space: (key32(namespace), id) and (key32(namespace), key32(name))
    a.batch_execute("BEGIN; SELECT xact_lock_pair('ms-account', 42)").unwrap();
    assert!(!boolean(&mut b, "SELECT pg_try_advisory_xact_lock(named_lock_key32('ms-account'), 42)"));
    a.batch_execute("COMMIT").unwrap();
    assert!(boolean(&mut b, "SELECT pg_try_advisory_lock(named_lock_key32('ms-account'), 42)"));
    assert!(!boolean(&mut a, "SELECT try_lock_pair('ms-account', 42)"));
    assert!(boolean(&mut b, "SELECT pg_advisory_unlock(named_lock_key32('ms-account'), 42)"));
    a.execute("SELECT lock_pair('ms-ns', 'ms-item')", &[]).unwrap();
    assert!(!boolean(&mut b, "SELECT pg_try_advisory_lock(named_lock_key32('ms-ns'), named_lock_key32('ms-item'))"));
    // the two key spaces are disjoint, like the built-ins' int8 and int4x2 spaces
    assert!(boolean(&mut b, "SELECT try_lock_named('ms-ns')"));
}

#[test]
fn blocked_lock_waits_until_released() {
    let mut a = session();
    let mut b = session();
    let mut obs = session();
    let bpid = pid(&mut b);
    a.execute("SELECT lock_named('ms-block')", &[]).unwrap();
    let waiter = thread::spawn(move || {
        b.execute("SELECT lock_named('ms-block')", &[]).unwrap();
        b
    });
    wait_until_waiting(&mut obs, bpid);
    assert!(!waiter.is_finished(), "lock_named returned while the lock was held elsewhere");
    assert!(boolean(&mut a, "SELECT unlock_named('ms-block')"));
    let mut b = waiter.join().unwrap();
    assert_eq!(held(&mut obs, bpid), 1);
    assert!(!boolean(&mut a, "SELECT try_lock_named('ms-block')"));
    assert!(boolean(&mut b, "SELECT unlock_named('ms-block')"));
}

#[test]
fn try_fails_without_waiting() {
    let mut a = session();
    let mut b = session();
    a.execute("SELECT lock_named('ms-try')", &[]).unwrap();
    // lock_timeout 0 = wait forever: if a try_ function waited, statement_timeout would
    // fire and the statement would fail instead of returning false.
    b.batch_execute("SET lock_timeout = 0; SET statement_timeout = '5s'").unwrap();
    assert!(!boolean(&mut b, "SELECT try_lock_named('ms-try')"));
    assert!(!boolean(&mut b, "SELECT try_lock_named_shared('ms-try')"));
    b.batch_execute("BEGIN").unwrap();
    assert!(!boolean(&mut b, "SELECT try_xact_lock_named('ms-try')"));
    assert!(!boolean(&mut b, "SELECT try_xact_lock_named_shared('ms-try')"));
    b.batch_execute("COMMIT").unwrap();
    let bpid = pid(&mut b);
    assert_eq!(held(&mut a, bpid), 0, "a failed try left a lock behind");
}

#[test]
fn session_lock_released_when_session_ends() {
    let mut a = session();
    let mut b = session();
    a.execute("SELECT lock_named('ms-end')", &[]).unwrap();
    a.execute("SELECT lock_pair_shared('ms-end', 7)", &[]).unwrap();
    assert!(!boolean(&mut b, "SELECT try_lock_named('ms-end')"));
    drop(a);
    // the backend exits asynchronously after the client disconnects: wait for it
    b.execute("SET lock_timeout = '20s'", &[]).unwrap();
    b.execute("SELECT lock_named('ms-end')", &[]).unwrap();
    assert!(boolean(&mut b, "SELECT try_lock_pair('ms-end', 7)"));
}

#[test]
fn xact_locks_end_with_transaction_session_locks_do_not() {
    let mut a = session();
    let mut b = session();
    for end in ["COMMIT", "ROLLBACK"] {
        a.batch_execute("BEGIN; SELECT xact_lock_named('ms-xact'); SELECT xact_lock_pair('ms-xact', 'p')").unwrap();
        assert!(!boolean(&mut b, "SELECT try_lock_named('ms-xact')"));
        assert!(!boolean(&mut b, "SELECT try_lock_pair('ms-xact', 'p')"));
        a.batch_execute(end).unwrap();
        assert!(boolean(&mut b, "SELECT try_lock_named('ms-xact')"), "xact lock kept after {end}");
        assert!(boolean(&mut b, "SELECT try_lock_pair('ms-xact', 'p')"));
        assert!(boolean(&mut b, "SELECT unlock_named('ms-xact')"));
        assert!(boolean(&mut b, "SELECT unlock_pair('ms-xact', 'p')"));

        a.batch_execute(&format!("BEGIN; SELECT lock_named('ms-sess'); {end}")).unwrap();
        assert!(!boolean(&mut b, "SELECT try_lock_named('ms-sess')"), "session lock lost at {end}");
        assert!(boolean(&mut a, "SELECT unlock_named('ms-sess')"));
    }
}

#[test]
fn shared_locks_coexist_and_exclusive_waits_for_them() {
    let mut a = session();
    let mut b = session();
    let mut c = session();
    let mut obs = session();
    a.execute("SELECT lock_named_shared('ms-shared')", &[]).unwrap();
    assert!(boolean(&mut b, "SELECT try_lock_named_shared('ms-shared')"));
    assert!(!boolean(&mut c, "SELECT try_lock_named('ms-shared')"));
    let cpid = pid(&mut c);
    let writer = thread::spawn(move || {
        c.execute("SELECT lock_named('ms-shared')", &[]).unwrap();
        c
    });
    wait_until_waiting(&mut obs, cpid);
    assert!(boolean(&mut a, "SELECT unlock_named_shared('ms-shared')"));
    // still one shared holder left: the writer keeps waiting
    wait_until_waiting(&mut obs, cpid);
    assert!(!writer.is_finished());
    assert!(boolean(&mut b, "SELECT unlock_named_shared('ms-shared')"));
    let mut c = writer.join().unwrap();
    assert!(!boolean(&mut a, "SELECT try_lock_named_shared('ms-shared')"));
    assert!(boolean(&mut c, "SELECT unlock_named('ms-shared')"));
}

#[test]
fn deadlock_is_detected() {
    let mut a = session();
    let mut b = session();
    let mut obs = session();
    let apid = pid(&mut a);
    a.execute("SELECT lock_named('ms-dl-1')", &[]).unwrap();
    b.execute("SELECT lock_pair('ms-dl', 2)", &[]).unwrap();
    // Each session waits for the other's lock. The victim's statement fails with 40P01
    // but its session lock stays held (as with the built-ins), so the victim releases it
    // to let the survivor through.
    let cross = |mut c: Client, want: &'static str, release: &'static str| {
        thread::spawn(move || {
            let r = c.execute(want, &[]).map(|_| ()).map_err(|e| sqlstate(&e));
            if r.is_err() {
                c.execute(release, &[]).unwrap();
            }
            r
        })
    };
    let ta = cross(a, "SELECT lock_pair('ms-dl', 2)", "SELECT unlock_named('ms-dl-1')");
    wait_until_waiting(&mut obs, apid);
    let tb = cross(b, "SELECT lock_named('ms-dl-1')", "SELECT unlock_pair('ms-dl', 2)");
    let results = [ta.join().unwrap(), tb.join().unwrap()];
    let errors: Vec<_> = results.iter().filter_map(|r| r.clone().err()).collect();
    assert_eq!(errors, vec![SqlState::T_R_DEADLOCK_DETECTED], "{results:?}");
}

#[test]
fn waits_honour_lock_timeout_statement_timeout_and_cancel() {
    let mut a = session();
    let mut b = session();
    let mut obs = session();
    let bpid = pid(&mut b);
    a.execute("SELECT lock_named('ms-timeout')", &[]).unwrap();

    b.batch_execute("SET lock_timeout = '200ms'").unwrap();
    let e = b.execute("SELECT lock_named('ms-timeout')", &[]).unwrap_err();
    assert_eq!(sqlstate(&e), SqlState::LOCK_NOT_AVAILABLE);

    b.batch_execute("SET lock_timeout = 0; SET statement_timeout = '200ms'").unwrap();
    let e = b.execute("SELECT xact_lock_named('ms-timeout')", &[]).unwrap_err();
    assert_eq!(sqlstate(&e), SqlState::QUERY_CANCELED);

    b.batch_execute("SET statement_timeout = '60s'").unwrap();
    let cancel = b.cancel_token();
    let waiter = thread::spawn(move || {
        let r = b.execute("SELECT lock_named_shared('ms-timeout')", &[]);
        (b, r.map(|_| ()).map_err(|e| sqlstate(&e)))
    });
    wait_until_waiting(&mut obs, bpid);
    cancel.cancel_query(postgres::NoTls).unwrap();
    let (_b, r) = waiter.join().unwrap();
    assert_eq!(r, Err(SqlState::QUERY_CANCELED));
    assert_eq!(held(&mut obs, bpid), 0, "an interrupted wait left a lock behind");
}

fn text(c: &mut Client, sql: &str, pid: i32) -> Option<String> {
    c.query_opt(sql, &[&pid]).unwrap().and_then(|r| r.get(0))
}

#[test]
fn view_shows_holder_and_waiter_by_name() {
    let mut a = session();
    let mut b = session();
    let mut obs = session();
    let (apid, bpid) = (pid(&mut a), pid(&mut b));
    a.execute("SELECT lock_pair('ms-view', 'job')", &[]).unwrap();
    let waiter = thread::spawn(move || {
        b.execute("SELECT lock_pair('ms-view', 'job')", &[]).unwrap();
        b
    });
    wait_until_waiting(&mut obs, bpid);
    let row = obs
        .query_one(
            "SELECT lock_name, granted, blocked_by, waiting_since IS NOT NULL, held_since IS NOT NULL
               FROM advisory_locks_v WHERE pid = $1",
            &[&bpid],
        )
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some("ms-view:job"));
    assert!(!row.get::<_, bool>(1));
    assert_eq!(row.get::<_, Option<Vec<i32>>>(2), Some(vec![apid]));
    assert!(row.get::<_, bool>(3), "waiting_since missing");
    assert!(!row.get::<_, bool>(4), "a waiter has no held_since");
    let row = obs
        .query_one(
            "SELECT lock_name, granted, blocked_by IS NULL, held_since <= now(), usename = current_user
               FROM advisory_locks_v WHERE pid = $1",
            &[&apid],
        )
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some("ms-view:job"));
    assert!(row.get::<_, bool>(1));
    assert!(row.get::<_, bool>(2));
    assert_eq!(row.get::<_, Option<bool>>(3), Some(true));
    assert!(row.get::<_, bool>(4));

    assert!(boolean(&mut a, "SELECT unlock_pair('ms-view', 'job')"));
    let mut b = waiter.join().unwrap();
    assert_eq!(text(&mut obs, "SELECT lock_name FROM advisory_locks_v WHERE pid = $1", apid), None, "released lock still shown");
    let held_since_b: Option<bool> =
        obs.query_one("SELECT held_since IS NOT NULL FROM advisory_locks_v WHERE pid = $1 AND granted", &[&bpid]).unwrap().get(0);
    assert_eq!(held_since_b, Some(true));
    assert!(boolean(&mut b, "SELECT unlock_pair('ms-view', 'job')"));
}

#[test]
fn names_of_other_roles_locks_are_private() {
    let mut admin = session();
    admin
        .batch_execute(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pnl_alice') THEN
                 CREATE ROLE pnl_alice; CREATE ROLE pnl_bob; CREATE ROLE pnl_carol;
                 CREATE ROLE pnl_stats; GRANT pnl_alice TO pnl_carol;
                 GRANT pg_read_all_stats TO pnl_stats;
               END IF;
             END $$",
        )
        .unwrap();
    let mut alice = session();
    let mut other = session();
    let apid = pid(&mut alice);
    alice.batch_execute("SET ROLE pnl_alice; SELECT lock_named('ms-secret-plan')").unwrap();
    let q_view = "SELECT lock_name FROM advisory_locks_v WHERE pid = $1";
    let q_lookup = "SELECT named_lock_name(named_lock_key('ms-secret-plan')) WHERE $1::int IS NOT NULL";
    let hidden = Some("<insufficient privilege>".to_string());
    let shown = Some("ms-secret-plan".to_string());
    for (role, expect) in [
        ("pnl_bob", &hidden),
        ("pnl_carol", &shown), // member of pnl_alice
        ("pnl_stats", &shown), // member of pg_read_all_stats
        ("pnl_alice", &shown), // the holder's own role
        ("NONE", &shown),      // superuser
    ] {
        other.batch_execute(&format!("SET ROLE {role}")).unwrap();
        assert_eq!(&text(&mut other, q_view, apid), expect, "view as {role}");
        assert_eq!(&text(&mut other, q_lookup, apid), expect, "lookup as {role}");
    }
    // a hidden name does not leak through the registry function either
    other.batch_execute("SET ROLE pnl_bob").unwrap();
    let leaked: i64 =
        other.query_one("SELECT count(*) FROM named_lock_registry() WHERE lock_name = 'ms-secret-plan'", &[]).unwrap().get(0);
    assert_eq!(leaked, 0);
    // nor through the statistics view
    let leaked: i64 =
        other.query_one("SELECT count(*) FROM named_lock_stats WHERE lock_name = 'ms-secret-plan'", &[]).unwrap().get(0);
    assert_eq!(leaked, 0);
    other.batch_execute("SET ROLE pnl_stats").unwrap();
    let seen: i64 =
        other.query_one("SELECT count(*) FROM named_lock_stats WHERE lock_name = 'ms-secret-plan'", &[]).unwrap().get(0);
    assert_eq!(seen, 1);
    assert!(boolean(&mut alice, "SELECT unlock_named('ms-secret-plan')"));
}

/// (immediate acquisitions, waits, total wait ms) of one name.
fn counts(c: &mut Client, name: &str) -> (i64, i64, f64) {
    let r = c
        .query_one("SELECT immediate_acquisitions, waits, total_wait_ms FROM named_lock_stats WHERE lock_name = $1", &[&name])
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

/// A lock last taken by another session makes `lock_named` wait at once instead of trying
/// first; whether it then slept is read from the lock manager, so a free lock still
/// counts as an immediate acquisition and only a real wait as a wait.
#[test]
fn only_a_real_wait_counts_as_one() {
    let mut a = session();
    let mut b = session();
    let mut obs = session();
    let name = "ms-handoff";
    a.execute("SELECT lock_named($1)", &[&name]).unwrap();
    assert!(boolean(&mut a, "SELECT unlock_named('ms-handoff')"));
    // the last grant went to `a`: b's call goes straight to a waiting request, which the
    // free lock grants at once
    b.execute("SELECT lock_named($1)", &[&name]).unwrap();
    assert_eq!(counts(&mut obs, name), (2, 0, 0.0));
    // now `a` really waits for b, through the same path
    let apid = pid(&mut a);
    let waiter = thread::spawn(move || {
        a.execute("SELECT lock_named('ms-handoff')", &[]).unwrap();
        a
    });
    wait_until_waiting(&mut obs, apid);
    thread::sleep(Duration::from_millis(50));
    assert!(boolean(&mut b, "SELECT unlock_named('ms-handoff')"));
    let mut a = waiter.join().unwrap();
    let (immediate, waits, total_ms) = counts(&mut obs, name);
    assert_eq!((immediate, waits), (2, 1));
    assert!(total_ms >= 50.0, "the wait lasted at least 50 ms, recorded {total_ms}");
    assert!(boolean(&mut a, "SELECT unlock_named('ms-handoff')"));
}
