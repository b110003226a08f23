"""Issue 5, item 2: the holder of a session lock and a transaction lock goes away without
unlocking — its client vanishes (socket closed without a Terminate message, or a psql
killed with SIGKILL, idle or in the middle of a query) or it is ended with
pg_terminate_backend — while two other sessions wait for those locks in lock_named and
xact_lock_named. Both waiters must get their lock promptly (within 10 s)."""

import os
import socket
import subprocess
import uuid

import pytest

from helpers import PROMPTLY, Bg, advisory_rows, backend_pid, named_tag, wait_until, wait_waiting
from pgtest_util import one


def psycopg_holder(main, s_name, x_name):
    conn = main()
    conn.execute("SELECT lock_named(%s)", (s_name,))
    conn.execute("BEGIN")
    conn.execute("SELECT xact_lock_named(%s)", (x_name,))
    return conn, backend_pid(conn)


class PsqlHolder:
    """A real psql client fed through a pipe, so it sits idle (or busy) holding locks
    for as long as the test wants."""

    def __init__(self, bindir, dsn, admin, script):
        self.app = "faults-" + uuid.uuid4().hex[:12]
        self.proc = subprocess.Popen(
            [os.path.join(bindir, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PGAPPNAME": self.app, "PGCONNECT_TIMEOUT": "10"},
            text=True,
        )
        self.proc.stdin.write(script)
        self.proc.stdin.flush()
        self.pid = wait_until(
            lambda: one(admin, "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (self.app,)),
            what="the psql holder to connect",
        )

    def kill(self):
        self.proc.kill()  # SIGKILL: the client cannot say goodbye
        self.proc.wait(timeout=10)

    def close(self):
        if self.proc.poll() is None:
            self.kill()


def shutdown_socket(conn):
    # A duplicate of libpq's descriptor: shutdown() acts on the connection itself, so the
    # server sees EOF exactly as when a client host loses the process, no Terminate sent.
    s = socket.socket(fileno=os.dup(conn.pgconn.socket))
    try:
        s.shutdown(socket.SHUT_RDWR)
    finally:
        s.close()


FAULTS = [
    "socket closed, idle in transaction",
    "psql SIGKILLed, idle in transaction",
    "psql SIGKILLed during a query",
    "pg_terminate_backend, idle in transaction",
    "pg_terminate_backend during a query",
]


@pytest.mark.parametrize("fault", FAULTS)
def test_waiters_get_the_locks_promptly_when_the_holder_vanishes(fault, main, admin, main_dsn, bindir):
    tag = uuid.uuid4().hex[:8]
    s_name, x_name = f"disc-{tag}-session", f"disc-{tag}-xact"
    busy = "during a query" in fault
    psql = None
    try:
        if fault.startswith("psql"):
            # client_connection_check_interval lets a busy backend notice the lost client
            # (PostgreSQL 14+); otherwise it would only notice when it next writes.
            psql = PsqlHolder(
                bindir,
                main_dsn,
                admin,
                "SET client_connection_check_interval = '200ms';\n"
                f"SELECT lock_named('{s_name}');\nBEGIN;\nSELECT xact_lock_named('{x_name}');\n"
                + ("SELECT pg_sleep(40);\n" if busy else ""),
            )
            hp, holder = psql.pid, None
        else:
            holder, hp = psycopg_holder(main, s_name, x_name)
            if busy:
                sleeper = Bg(holder, "SELECT pg_sleep(40)")
        wait_until(
            lambda: len({r for r in advisory_rows(admin, [hp]) if r[5]}) == 2,
            what="the holder to hold both locks",
        )
        if busy:
            wait_until(
                lambda: one(admin, "SELECT state = 'active' AND query LIKE '%%pg_sleep%%' "
                                   "FROM pg_stat_activity WHERE pid = %s", (hp,)),
                what="the holder to be busy in pg_sleep",
            )

        w1, w2 = main(), main()
        p1, p2 = backend_pid(w1), backend_pid(w2)
        waiter1 = Bg(w1, "SELECT lock_named(%s)", (s_name,))
        w2.execute("BEGIN")
        waiter2 = Bg(w2, "SELECT xact_lock_named(%s)", (x_name,))
        wait_waiting(admin, p1, waiter1)
        wait_waiting(admin, p2, waiter2)

        if fault.startswith("socket"):
            shutdown_socket(holder)
        elif fault.startswith("psql"):
            psql.kill()
        else:
            assert one(admin, "SELECT pg_terminate_backend(%s)", (hp,)) is True

        for w in (waiter1, waiter2):
            assert w.wait(PROMPTLY), f"{fault}: a waiter did not get the lock within {PROMPTLY}s"
            assert w.error is None, f"{fault}: {w.error!r}"
        s_tag, x_tag = named_tag(admin, s_name), named_tag(admin, x_name)
        assert advisory_rows(admin, [hp, p1, p2]) == {
            (p1, *s_tag, "ExclusiveLock", True),
            (p2, *x_tag, "ExclusiveLock", True),
        }
        assert one(admin, "SELECT named_lock_holders(%s)", (s_name,)) == [p1]
        wait_until(
            lambda: one(admin, "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = %s", (hp,)),
            what="the holder's backend to exit",
        )
        if busy and holder is not None:
            assert sleeper.wait(PROMPTLY) and sleeper.error is not None
        # and the view, by name
        names = admin.execute(
            "SELECT pid, lock_name FROM advisory_locks_v WHERE lock_name LIKE %s ORDER BY pid",
            (f"disc-{tag}-%",),
        ).fetchall()
        assert sorted(names) == sorted([(p1, s_name), (p2, x_name)])
        w2.execute("COMMIT")
    finally:
        if psql is not None:
            psql.close()
