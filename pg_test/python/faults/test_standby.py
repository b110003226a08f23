"""Issue 5, item 6: a streaming hot standby of the main server (pg_basebackup -R, started
by scripts/fault-tests.sh with the primary's postgresql.conf, so preloaded on every
version). Every lock function, the registry, the view and the statistics work there,
between real standby sessions; and the standby's locks and names are its own: a lock held
on the primary does not block the same name on the standby, and the other way round."""

import uuid

from helpers import PROMPTLY, Bg, advisory_rows, backend_pid, named_tag, pair_tag, wait_waiting
from pgtest_util import one


def test_standby_runs_every_lock_function_between_its_own_sessions(standby):
    u = uuid.uuid4().hex[:8]
    job, acct, many = f"hs-{u}-job", f"hs-{u}-account", [f"hs-{u}-m{i}" for i in range(3)]
    s1, s2, obs = standby(), standby(), standby()
    p1, p2 = backend_pid(s1), backend_pid(s2)
    assert one(s1, "SELECT pg_is_in_recovery()") is True
    assert one(s1, "SELECT storage FROM named_lock_registry_info()") == "shared_preload_libraries"
    assert one(s1, "SHOW transaction_read_only") == "on"

    # session locks, try, the timeout overload (waits in an internal subtransaction)
    s1.execute("SELECT lock_named(%s)", (job,))
    assert one(s2, "SELECT try_lock_named(%s)", (job,)) is False
    assert one(s2, "SELECT lock_named(%s, '100ms')", (job,)) is False
    assert advisory_rows(obs, [p2]) == set()
    assert one(s1, "SELECT lock_pair(%s, 'item', '1s') AND try_lock_pair_shared(%s, 7)", (acct, acct)) is True

    # a real wait, released by the other standby session
    waiter = Bg(s2, "SELECT lock_named(%s)", (job,))
    wait_waiting(obs, p2, waiter)
    view = obs.execute(
        "SELECT pid, lock_name, key_kind, mode, granted, blocked_by FROM advisory_locks_v "
        "WHERE lock_name LIKE %s ORDER BY lock_name, granted DESC",
        (f"hs-{u}-%",),
    ).fetchall()
    assert view == [
        (p1, f"{acct}:7", "pair", "shared", True, None),
        (p1, f"{acct}:item", "pair", "exclusive", True, None),
        (p1, job, "bigint", "exclusive", True, None),
        (p2, job, "bigint", "exclusive", False, [p1]),
    ]
    assert one(s1, "SELECT unlock_named(%s)", (job,)) is True
    assert waiter.wait(PROMPTLY) and waiter.error is None, repr(waiter.error)
    assert one(obs, "SELECT named_lock_holders(%s)", (job,)) == [p2]
    assert one(s2, "SELECT unlock_named(%s)", (job,)) is True

    # transaction locks in a (read-only) standby transaction, and the _many family
    s1.execute("BEGIN")
    s1.execute("SELECT xact_lock_named(%s), xact_lock_pair(%s, 42)", (job, acct))
    assert one(s1, "SELECT xact_lock_pair(%s, 'other', '1s') AND try_xact_lock_named_shared(%s)",
               (acct, f"hs-{u}-report")) is True
    s1.execute("SELECT xact_lock_many(%s)", (many,))
    assert one(s2, "SELECT try_lock_many(%s)", (many,)) is False
    assert one(s2, "SELECT xact_lock_many(%s, '100ms')", (many[:1],)) is False
    # seven transaction locks and the two session pair locks from before
    assert len(advisory_rows(obs, [p1])) == 9
    s1.execute("COMMIT")
    assert one(s2, "SELECT lock_many(%s, '1s')", (many,)) is True
    assert one(s2, "SELECT unlock_many(%s)", (many,)) == 3
    assert one(s1, "SELECT unlock_pair(%s, 'item') AND unlock_pair_shared(%s, 7)", (acct, acct)) is True
    assert advisory_rows(obs, [p1, p2]) == set()

    # names and statistics live in the standby's own shared memory
    assert one(s1, "SELECT register_lock_name(%s) = named_lock_key(%s)", (f"hs-{u}-reg",) * 2) is True
    assert one(s2, "SELECT named_lock_name(named_lock_key(%s))", (f"hs-{u}-reg",)) == f"hs-{u}-reg"
    assert one(s2, "SELECT named_lock_name(named_lock_key32(%s), 42)", (acct,)) == f"{acct}:42"
    stats = obs.execute(
        "SELECT acquisitions, waits, try_failures, timeouts FROM named_lock_stats WHERE lock_name = %s", (job,)
    ).fetchone()
    # lock (s1), wait+grant (s2), xact lock (s1); one try failure, one timeout
    assert stats == (3, 1, 1, 1)
    info = obs.execute("SELECT names, not_stored, collisions FROM named_lock_registry_info()").fetchone()
    assert info[0] >= 6 and info[1:] == (0, 0)


def test_standby_and_primary_locks_and_names_are_independent(main, standby):
    u = uuid.uuid4().hex[:8]
    a, b = f"hs-{u}-a", f"hs-{u}-b"
    primary, primary2, replica, replica2 = main(), main(), standby(), standby()
    assert one(replica, "SELECT pg_is_in_recovery()") is True
    assert one(primary, "SELECT pg_is_in_recovery()") is False
    pp, pp2, rp, rp2 = (backend_pid(c) for c in (primary, primary2, replica, replica2))

    primary.execute("SELECT lock_named(%s)", (a,))
    primary.execute("BEGIN")
    primary.execute("SELECT xact_lock_pair(%s, 1)", (a,))
    replica.execute("SELECT lock_named(%s)", (b,))
    # Each server's own sessions exclude each other; the other server's locks do not.
    assert one(replica2, "SELECT try_lock_named(%s)", (a,)) is True
    replica2.execute("BEGIN")
    assert one(replica2, "SELECT try_xact_lock_pair(%s, 1)", (a,)) is True
    assert one(replica2, "SELECT try_lock_named(%s)", (b,)) is False
    assert one(primary2, "SELECT try_lock_named(%s)", (b,)) is True
    assert one(primary2, "SELECT try_lock_named(%s)", (a,)) is False
    assert one(primary2, "SELECT try_lock_pair(%s, 1)", (a,)) is False

    # Each server's pg_locks and view show its own locks only (both servers run on this
    # host, so their live backends' pids are distinct).
    ta, tb, tpair = named_tag(primary2, a), named_tag(primary2, b), pair_tag(primary2, a, 1)
    assert advisory_rows(primary2, [pp, pp2, rp, rp2]) == {
        (pp, *ta, "ExclusiveLock", True),
        (pp, *tpair, "ExclusiveLock", True),
        (pp2, *tb, "ExclusiveLock", True),
    }
    assert advisory_rows(replica2, [pp, pp2, rp, rp2]) == {
        (rp, *tb, "ExclusiveLock", True),
        (rp2, *ta, "ExclusiveLock", True),
        (rp2, *tpair, "ExclusiveLock", True),
    }
    view = lambda c: sorted(  # noqa: E731
        c.execute("SELECT lock_name, granted FROM advisory_locks_v WHERE lock_name LIKE %s", (f"hs-{u}-%",)).fetchall()
    )
    assert view(primary2) == [(a, True), (f"{a}:1", True), (b, True)]
    assert view(replica2) == [(a, True), (f"{a}:1", True), (b, True)]
    assert one(primary2, "SELECT named_lock_holders(%s)", (a,)) == [pp]
    assert one(replica2, "SELECT named_lock_holders(%s)", (a,)) == [rp2]

    # Names remembered on one server are unknown on the other.
    for here, there, who in ((primary2, replica2, "primary"), (replica2, primary2, "standby")):
        name = f"hs-{u}-{who}-only"
        assert one(here, "SELECT register_lock_name(%s) = named_lock_key(%s)", (name, name)) is True
        assert one(here, "SELECT named_lock_name(named_lock_key(%s))", (name,)) == name
        assert one(there, "SELECT named_lock_name(named_lock_key(%s))", (name,)) is None

    primary.execute("COMMIT")
    replica2.execute("COMMIT")
    assert one(primary, "SELECT unlock_named(%s)", (a,)) is True
    assert one(primary2, "SELECT unlock_named(%s)", (b,)) is True
    assert one(replica, "SELECT unlock_named(%s)", (b,)) is True
    assert one(replica2, "SELECT unlock_named(%s)", (a,)) is True
