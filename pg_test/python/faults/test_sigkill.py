"""Issue 5, item 1: SIGKILL of a backend holding session and transaction named locks,
with other backends waiting for them. The postmaster treats it as a crash: it kills every
backend, reinitialises shared memory (the lock table and the name registry) and accepts
connections again. Nothing of the killed session may survive: no lock, no stale name,
and the registry must be consistent and usable. A prepared transaction's lock is durable
and comes back (by key: names live in shared memory only)."""

import re

import psycopg

from helpers import PATIENCE, Bg, advisory_rows, backend_pid, kill_backend, wait_until, wait_waiting
from pgtest_util import one

HOLDER_NAMES = {"crash-session", "crash-ns:crash-item", "crash-ns:7", "crash-xact", "crash-m1", "crash-m2"}


def test_sigkill_of_a_lock_holder_crash_restarts_clean(main, main_dsn, main_log, sessions, gids):
    admin, holder, w1, w2, preparer = main(), main(), main(), main(), main()
    hp, p1, p2 = backend_pid(holder), backend_pid(w1), backend_pid(w2)
    # A prepared transaction is durable: its lock must come back after the crash.
    gid = f"faults-crash-{hp}"
    gids.append(gid)
    preparer.execute("BEGIN")
    preparer.execute("SELECT xact_lock_named('crash-prepared')")
    preparer.execute(f"PREPARE TRANSACTION '{gid}'")
    preparer.close()
    holder.execute("SELECT lock_named('crash-session'), lock_pair('crash-ns', 'crash-item'), lock_pair('crash-ns', 7)")
    holder.execute("BEGIN")
    holder.execute("SELECT xact_lock_named('crash-xact'), xact_lock_many(ARRAY['crash-m1', 'crash-m2'])")

    waiter1 = Bg(w1, "SELECT lock_named('crash-xact')")
    wait_waiting(admin, p1, waiter1)
    w2.execute("BEGIN")
    waiter2 = Bg(w2, "SELECT xact_lock_pair('crash-ns', 'crash-item')")
    wait_waiting(admin, p2, waiter2)

    # The view names the holder's six locks and both waiters, blocked by the holder.
    rows = admin.execute(
        "SELECT pid, lock_name, granted, blocked_by FROM advisory_locks_v WHERE pid = ANY(%s)",
        ([hp, p1, p2],),
    ).fetchall()
    assert {r[1] for r in rows if r[0] == hp and r[2]} == HOLDER_NAMES
    assert sorted((r[0], r[1], r[3]) for r in rows if not r[2]) == sorted(
        [(p1, "crash-xact", [hp]), (p2, "crash-ns:crash-item", [hp])]
    )
    assert one(admin, "SELECT names FROM named_lock_registry_info()") >= len(HOLDER_NAMES)

    kill_backend(hp, "KILL")

    # Every other backend is terminated by the postmaster: the waiters never get the lock.
    for w in (waiter1, waiter2):
        assert w.wait(PATIENCE), "a waiter survived the crash restart"
        assert isinstance(w.error, psycopg.OperationalError), f"waiter: {w.row!r} {w.error!r}"

    after = sessions.open(main_dsn, retry=True)

    def crash_logged():
        with open(main_log, encoding="utf-8", errors="replace") as f:
            log = f.read()
        return log if re.search(rf"\(PID {hp}\) was terminated by signal 9", log) else None

    log = wait_until(crash_logged, what="the killed backend's crash in the server log")
    assert "all server processes terminated; reinitializing" in log

    # A fresh, empty and consistent registry; no lock from before the crash but the
    # prepared transaction's, which crash recovery restores (by key: names are not
    # durable, the registry lives in shared memory).
    storage, capacity, names, not_stored, evictions, collisions = after.execute(
        "SELECT * FROM named_lock_registry_info()"
    ).fetchone()
    assert storage == "shared_preload_libraries"
    assert capacity == int(one(after, "SHOW pg_named_locks.max_names"))
    assert (names, not_stored, evictions, collisions) == (0, 0, 0, 0)
    assert one(after, "SELECT count(*) FROM named_lock_registry()") == 0
    assert one(after, "SELECT count(*) FROM named_lock_stats") == 0
    assert after.execute(
        "SELECT pid, lock_name, lock_key = named_lock_key('crash-prepared'), granted FROM advisory_locks_v"
    ).fetchall() == [(None, None, True, True)]
    assert one(after, "SELECT try_lock_named('crash-prepared')") is False
    # registering the name labels the restored lock again
    after.execute("SELECT register_lock_name('crash-prepared')")
    assert one(after, "SELECT lock_name FROM advisory_locks_v WHERE pid IS NULL") == "crash-prepared"
    after.execute(f"COMMIT PREPARED '{gid}'")
    assert one(after, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
    assert one(after, "SELECT try_lock_named('crash-prepared') AND unlock_named('crash-prepared')") is True
    assert one(after, "SELECT named_lock_holders('crash-session')") == []
    for name in ("crash-session", "crash-xact", "crash-m1"):
        assert one(after, "SELECT named_lock_name(named_lock_key(%s))", (name,)) is None, f"stale {name}"
    assert one(after, "SELECT named_lock_name(named_lock_key32('crash-ns'), 7)") is None

    # Everything works again, at once (no wait: nobody holds anything).
    ap = backend_pid(after)
    assert one(after, "SELECT try_lock_named('crash-session')") is True
    assert one(after, "SELECT lock_pair('crash-ns', 'crash-item', '1s')") is True
    after.execute("BEGIN")
    assert one(after, "SELECT try_xact_lock_many(ARRAY['crash-m1', 'crash-xact'])") is True
    rows = after.execute(
        "SELECT lock_name, key_kind, granted, held_since IS NOT NULL FROM advisory_locks_v WHERE pid = %s",
        (ap,),
    ).fetchall()
    assert sorted(rows) == [
        ("crash-m1", "bigint", True, True),
        ("crash-ns:crash-item", "pair", True, True),
        ("crash-session", "bigint", True, True),
        ("crash-xact", "bigint", True, True),
    ]
    assert len(advisory_rows(after, [ap])) == 4
    after.execute("COMMIT")
    assert one(after, "SELECT named_lock_holders('crash-session')") == [ap]
    info = after.execute("SELECT names, not_stored, collisions FROM named_lock_registry_info()").fetchone()
    # crash-prepared, crash-session, crash-m1, crash-xact and the pair crash-ns:crash-item
    # (with its namespace, remembered for (namespace, id) look-ups)
    assert info[0] == one(after, "SELECT count(*) FROM named_lock_registry()")
    assert info[0] >= 5 and info[1:] == (0, 0)
    assert one(after, "SELECT acquisitions FROM named_lock_stats WHERE lock_name = 'crash-session'") == 1
    assert one(after, "SELECT unlock_named('crash-session') AND unlock_pair('crash-ns', 'crash-item')") is True
    assert one(after, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
