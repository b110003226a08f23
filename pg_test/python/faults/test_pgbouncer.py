"""Issue 5, item 7: PgBouncer in transaction pooling mode in front of the main server
(scripts/fault-tests.sh: pool_mode = transaction, a few server connections per pool).
Transaction locks keep mutual exclusion across pooled clients: many clients, more than
server connections, doing a read-modify-write of one counter under xact_lock_named lose
no update, while the same work without the lock does. Session locks are unsafe there:
a pooled server connection keeps the lock after the transaction, so another client that
lands on it "gets" the lock too, and the lock outlives the client that took it."""

import random
import threading
import time
import uuid

import pytest

from helpers import PATIENCE, PROMPTLY, Bg, backend_pid, wait_until
from pgtest_util import one

CLIENTS = 8
ROUNDS = 25


@pytest.fixture
def counter(admin):
    """A fresh row of pooled_counter (created by scripts/fault-tests.sh), by id."""
    cid = random.randint(1, 2**31 - 1)
    admin.execute("INSERT INTO pooled_counter VALUES (%s, 0) ON CONFLICT (id) DO UPDATE SET n = 0", (cid,))
    yield cid
    admin.execute("DELETE FROM pooled_counter WHERE id = %s", (cid,))


def increment(conn, cid, lock_name, pause=0.002):
    """One read-modify-write transaction; returns the server backend it ran on."""
    conn.execute("BEGIN")
    if lock_name is not None:
        conn.execute("SELECT xact_lock_named(%s)", (lock_name,))
    n, pid = conn.execute("SELECT n, pg_backend_pid() FROM pooled_counter WHERE id = %s", (cid,)).fetchone()
    time.sleep(pause)  # the client thinks: the window a missing lock lets others into
    conn.execute("UPDATE pooled_counter SET n = %s WHERE id = %s", (n + 1, cid))
    conn.execute("COMMIT")
    return pid


def test_xact_lock_keeps_mutual_exclusion_across_pooled_clients(bouncer, admin, counter, pool_size):
    lock_name = f"pooled-critical-{uuid.uuid4().hex[:8]}"
    clients = [bouncer() for _ in range(CLIENTS)]
    assert CLIENTS > pool_size
    backends, errors = [set() for _ in clients], []
    start = threading.Barrier(CLIENTS)

    def work(i):
        try:
            start.wait(PATIENCE)
            for _ in range(ROUNDS):
                backends[i].add(increment(clients[i], counter, lock_name))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(45)
    assert not any(t.is_alive() for t in threads), "a pooled client hung"
    assert not errors, errors
    # the clients really shared the pool's few server connections ...
    used = set().union(*backends)
    assert len(used) <= pool_size, f"{len(used)} server connections for a pool of {pool_size}"
    assert all(backends), "a client never ran"
    # ... and not one increment was lost
    assert one(admin, "SELECT n FROM pooled_counter WHERE id = %s", (counter,)) == CLIENTS * ROUNDS
    assert one(admin, "SELECT count(*) FROM advisory_locks_v WHERE lock_name = %s", (lock_name,)) == 0


def test_pooled_read_modify_write_loses_updates_without_the_lock_and_not_with_it(bouncer, admin, counter):
    """The same two interleaved transactions, step by step: the test above can fail."""
    a, b = bouncer(), bouncer()
    # without a lock: both read 0, both write 1
    for c in (a, b):
        c.execute("BEGIN")
    na = one(a, "SELECT n FROM pooled_counter WHERE id = %s", (counter,))
    nb = one(b, "SELECT n FROM pooled_counter WHERE id = %s", (counter,))
    assert one(a, "SELECT pg_backend_pid()") != one(b, "SELECT pg_backend_pid()")
    a.execute("UPDATE pooled_counter SET n = %s WHERE id = %s", (na + 1, counter))
    a.execute("COMMIT")
    b.execute("UPDATE pooled_counter SET n = %s WHERE id = %s", (nb + 1, counter))
    b.execute("COMMIT")
    assert one(admin, "SELECT n FROM pooled_counter WHERE id = %s", (counter,)) == 1, "an update was lost"

    # with xact_lock_named: b's lock call waits until a commits, then reads a's value
    lock_name = f"pooled-critical-{uuid.uuid4().hex[:8]}"
    a.execute("BEGIN")
    a.execute("SELECT xact_lock_named(%s)", (lock_name,))
    na = one(a, "SELECT n FROM pooled_counter WHERE id = %s", (counter,))
    b.execute("BEGIN")
    locker = Bg(b, "SELECT xact_lock_named(%s)", (lock_name,))
    wait_until(
        lambda: one(admin, "SELECT count(*) FROM advisory_locks_v WHERE lock_name = %s AND NOT granted", (lock_name,)),
        what="the second pooled client to wait for the lock",
    )
    assert not locker.done()
    a.execute("UPDATE pooled_counter SET n = %s WHERE id = %s", (na + 1, counter))
    a.execute("COMMIT")
    assert locker.wait(PROMPTLY) and locker.error is None, repr(locker.error)
    nb = one(b, "SELECT n FROM pooled_counter WHERE id = %s", (counter,))
    assert nb == na + 1
    b.execute("UPDATE pooled_counter SET n = %s WHERE id = %s", (nb + 1, counter))
    b.execute("COMMIT")
    assert one(admin, "SELECT n FROM pooled_counter WHERE id = %s", (counter,)) == 3


def test_session_locks_are_unsafe_behind_transaction_pooling(bouncer_single, main, admin):
    """With one server connection in the pool, where each transaction runs is known."""
    name = f"pooled-session-{uuid.uuid4().hex[:8]}"
    client_a, client_b = bouncer_single(), bouncer_single()
    direct = main()
    server = one(client_a, "SELECT pg_backend_pid()")
    assert one(client_b, "SELECT pg_backend_pid()") == server

    # A takes a session lock; its transaction ends, the server connection goes back to
    # the pool still holding the lock.
    client_a.execute("SELECT lock_named(%s)", (name,))
    assert one(admin, "SELECT named_lock_holders(%s)", (name,)) == [server]
    assert one(direct, "SELECT try_lock_named(%s)", (name,)) is False, "an unpooled session is excluded"
    # B's next transaction lands on the same server connection: re-entrant, so B "gets"
    # the lock A holds — no mutual exclusion between A and B.
    assert one(client_b, "SELECT try_lock_named(%s)", (name,)) is True
    # A goes away; the lock does not (it belongs to the server connection, not to A).
    client_a.close()
    time.sleep(0.2)
    assert one(admin, "SELECT named_lock_holders(%s)", (name,)) == [server]
    # and B can release what A took
    assert one(client_b, "SELECT unlock_named(%s)", (name,)) is True
    assert one(client_b, "SELECT unlock_named(%s)", (name,)) is True
    assert one(admin, "SELECT named_lock_holders(%s)", (name,)) == []
    assert one(direct, "SELECT try_lock_named(%s)", (name,)) is True
    assert backend_pid(direct) != server
