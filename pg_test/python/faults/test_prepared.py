"""Issue 5, item 5: PREPARE TRANSACTION with named locks. Transaction locks pass to the
prepared transaction: they outlive the session that prepared it, block others, show in
advisory_locks_v by name (with no pid), and go at COMMIT / ROLLBACK PREPARED. Session
locks stay with the session, exactly as the built-in advisory locks do, including
PostgreSQL's refusal to prepare a transaction holding one object at both levels."""

import uuid

import psycopg
import pytest

from helpers import PROMPTLY, Bg, advisory_rows, backend_pid, named_tag, pair_tag, wait_until, wait_waiting
from pgtest_util import one, sqlstate


def prepared_rows(admin):
    """Advisory locks of prepared transactions: pg_locks shows them with no pid."""
    return set(
        admin.execute(
            "SELECT classid::int8, objid::int8, objsubid::int4, mode, granted FROM pg_locks "
            "WHERE locktype = 'advisory' AND pid IS NULL"
        ).fetchall()
    )


def gone(admin, pid):
    wait_until(
        lambda: one(admin, "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = %s", (pid,)),
        what=f"backend {pid} to exit",
    )


@pytest.mark.parametrize("finish", ["COMMIT PREPARED", "ROLLBACK PREPARED"])
def test_prepared_transaction_keeps_its_named_locks_until_it_finishes(finish, main, admin, gids):
    u = uuid.uuid4().hex[:8]
    x, sh, m1, m2, ns = (f"prep-{u}-{s}" for s in ("x", "shared", "m1", "m2", "ns"))
    gid = f"faults-{u}"
    gids.append(gid)
    tags = {
        x: named_tag(admin, x),
        sh: named_tag(admin, sh),
        m1: named_tag(admin, m1),
        m2: named_tag(admin, m2),
        f"{ns}:item": pair_tag(admin, ns, "item"),
        f"{ns}:42": pair_tag(admin, ns, 42),
    }

    c1 = main()
    p1 = backend_pid(c1)
    # a low cap: the prepared transaction's holds must stop counting for this session
    c1.execute("SET pg_named_locks.max_locks_per_session = 6")
    c1.execute("BEGIN")
    c1.execute("SELECT xact_lock_named(%s), xact_lock_named_shared(%s)", (x, sh))
    c1.execute("SELECT xact_lock_pair(%s, 'item'), xact_lock_pair(%s, 42, '5s')", (ns, ns))
    c1.execute("SELECT xact_lock_many(%s)", ([m1, m2],))
    c1.execute(f"PREPARE TRANSACTION '{gid}'")
    expected = {(*t, "ShareLock" if n == sh else "ExclusiveLock", True) for n, t in tags.items()}
    assert prepared_rows(admin) >= expected
    assert advisory_rows(admin, [p1]) == set(), "the locks moved to the prepared transaction"
    # The session goes on with a fresh count: six new locks fit under the cap of six.
    assert one(c1, "SELECT try_lock_many(%s)", ([f"prep-{u}-own-{i}" for i in range(6)],)) is True
    c1.close()
    gone(admin, p1)

    # The prepared transaction still holds everything, with nobody connected.
    assert prepared_rows(admin) >= expected
    c2 = main()
    assert one(c2, "SELECT try_lock_named(%s)", (x,)) is False
    assert one(c2, "SELECT try_lock_pair(%s, 'item') OR try_lock_pair(%s, 42)", (ns, ns)) is False
    assert one(c2, "SELECT try_lock_many(%s)", ([m2, f"prep-{u}-free"],)) is False
    assert one(c2, "SELECT pg_try_advisory_lock(named_lock_key(%s))", (m1,)) is False
    assert one(c2, "SELECT try_lock_named(%s)", (sh,)) is False
    assert one(c2, "SELECT try_lock_named_shared(%s)", (sh,)) is True, "shared is compatible with shared"
    assert one(c2, "SELECT unlock_named_shared(%s)", (sh,)) is True
    assert advisory_rows(admin, [backend_pid(c2)]) == set(), "a failed try left something"

    # advisory_locks_v shows them by name, with no pid, and does not break on them.
    rows = admin.execute(
        "SELECT lock_name, pid, granted, mode, usename, blocked_by FROM advisory_locks_v "
        "WHERE lock_name LIKE %s ORDER BY lock_name",
        (f"prep-{u}-%",),
    ).fetchall()
    assert sorted(rows) == sorted(
        (n, None, True, "shared" if n == sh else "exclusive", None, None) for n in tags
    )
    # a prepared transaction holds it: pid 0, as pg_blocking_pids shows it
    assert one(admin, "SELECT named_lock_holders(%s)", (x,)) == [0]

    # A waiter queues behind the prepared transaction and gets the lock when it ends.
    w = main()
    wp = backend_pid(w)
    waiter = Bg(w, "SELECT lock_named(%s)", (x,))
    wait_waiting(admin, wp, waiter)
    # pg_blocking_pids represents a prepared transaction by zero
    assert one(admin, "SELECT blocked_by FROM advisory_locks_v WHERE pid = %s AND NOT granted", (wp,)) == [0]
    admin.execute(f"{finish} '{gid}'")
    assert waiter.wait(PROMPTLY), f"the waiter did not get the lock after {finish}"
    assert waiter.error is None, repr(waiter.error)
    assert prepared_rows(admin) == set()
    assert one(c2, "SELECT try_lock_pair(%s, 'item') AND try_lock_pair(%s, 42) AND try_lock_many(%s)",
               (ns, ns, [m1, m2])) is True
    assert one(w, "SELECT unlock_named(%s)", (x,)) is True


# Each scenario runs once with the extension and once with the built-ins on the same key:
# the outcome must be the same, and is what PostgreSQL documents for advisory locks.
SCENARIOS = {
    # a session lock taken inside the transaction: PREPARE leaves it with the session
    "session lock only": (
        ["SELECT lock_named(%(n)s)"],
        ["SELECT pg_advisory_lock(named_lock_key(%(n)s))"],
    ),
    # the same object at session and transaction level: PREPARE is refused (0A000)
    "session and xact lock on one name": (
        ["SELECT lock_named(%(n)s)", "SELECT xact_lock_named(%(n)s)"],
        ["SELECT pg_advisory_lock(named_lock_key(%(n)s))", "SELECT pg_advisory_xact_lock(named_lock_key(%(n)s))"],
    ),
    "session and xact pair lock": (
        ["SELECT xact_lock_pair(%(ns)s, 7)", "SELECT lock_pair(%(ns)s, 7)"],
        ["SELECT pg_advisory_xact_lock(named_lock_key32(%(ns)s), 7)",
         "SELECT pg_advisory_lock(named_lock_key32(%(ns)s), 7)"],
    ),
}


def prepare_outcome(main, admin, gids, statements, params, tag):
    gid = f"faults-{uuid.uuid4().hex[:12]}"
    gids.append(gid)
    c = main()
    pid = backend_pid(c)
    c.execute("BEGIN")
    for sql in statements:
        c.execute(sql, params)
    error = None
    try:
        c.execute(f"PREPARE TRANSACTION '{gid}'")
    except psycopg.Error as e:
        error = (sqlstate(e), str(e).splitlines()[0])
        # a failed PREPARE is a ROLLBACK already
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    mine = {r[4:] for r in advisory_rows(admin, [pid]) if r[1:4] == tag}
    prepared = {r[3:] for r in prepared_rows(admin) if r[:3] == tag}
    was_prepared = one(admin, "SELECT count(*) FROM pg_prepared_xacts WHERE gid = %s", (gid,))
    c.close()
    gone(admin, pid)
    after_close = {r[3:] for r in prepared_rows(admin) if r[:3] == tag}
    if was_prepared:
        admin.execute(f"COMMIT PREPARED '{gid}'")
    return {"error": error, "prepared": was_prepared, "session keeps": mine,
            "prepared xact holds": prepared, "after the session closed": after_close}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_session_locks_and_prepare_behave_like_the_builtins(scenario, main, admin, gids):
    named_sql, builtin_sql = SCENARIOS[scenario]
    u = uuid.uuid4().hex[:8]
    params = {"n": f"prep-s-{u}", "ns": f"prep-s-{u}-ns"}
    tag = pair_tag(admin, params["ns"], 7) if "pair" in scenario else named_tag(admin, params["n"])
    named = prepare_outcome(main, admin, gids, named_sql, params, tag)
    builtin = prepare_outcome(main, admin, gids, builtin_sql, params, tag)
    assert named == builtin
    if scenario == "session lock only":
        assert named["error"] is None and named["prepared"] == 1
        assert named["session keeps"] == {("ExclusiveLock", True)}
        assert named["prepared xact holds"] == set() == named["after the session closed"]
    else:
        assert named["error"] == (
            "0A000",
            "cannot PREPARE while holding both session-level and transaction-level locks on the same object",
        )
        assert named["prepared"] == 0
        # the failed PREPARE rolled the transaction back; the session lock stays
        assert named["session keeps"] == {("ExclusiveLock", True)}
