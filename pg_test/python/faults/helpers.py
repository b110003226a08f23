"""Shared helpers of the fault-injection suite: background statements, polling, lock
tags, pg_locks snapshots, killing a backend (what all the suites share is in
pgtest_util)."""

import os
import subprocess
import threading
import time

import pgtest_util
from pgtest_util import key32, key64, one, u32

# The longest any single poll may take. Generous: the suite asserts behaviour, not speed.
PATIENCE = 20.0
# What "promptly" means for a lock to pass on after its holder is gone.
PROMPTLY = 10.0

# Statements still running in the background; the test teardown cancels them before it
# closes their connections (closing a libpq connection another thread uses is unsafe).
RUNNING = []


class Bg:
    """One statement running in a thread on its own connection (a real concurrent
    session). `row` is the first result row, `error` the exception it raised, `finished`
    the time.monotonic() at which it returned or raised."""

    def __init__(self, conn, sql, params=None):
        self.conn, self.sql, self.params = conn, sql, params
        self.row = None
        self.error = None
        self.finished = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        RUNNING.append(self)
        self._thread.start()

    def _run(self):
        try:
            cur = self.conn.execute(self.sql, self.params)
            self.row = cur.fetchone() if cur.description else None
        except BaseException as e:  # noqa: BLE001 - reported to the test
            self.error = e
        finally:
            self.finished = time.monotonic()
            self._done.set()

    def done(self):
        return self._done.is_set()

    def wait(self, timeout=PATIENCE):
        """True when the statement finished within `timeout` seconds."""
        return self._done.wait(timeout)

    def result(self, timeout=PATIENCE):
        assert self.wait(timeout), f"still running after {timeout}s: {self.sql}"
        if self.error is not None:
            raise self.error
        return self.row


def wait_until(pred, timeout=PATIENCE, what="condition", interval=0.02):
    """pgtest_util.wait_until, as patient as this suite and polling often (the tests time
    how promptly a lock passes on)."""
    return pgtest_util.wait_until(pred, timeout, what, interval)


def backend_pid(conn):
    return one(conn, "SELECT pg_backend_pid()")


def is_waiting(admin, pid):
    return one(
        admin,
        "SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory' AND pid = %s AND NOT granted",
        (pid,),
    )


def wait_waiting(admin, pid, bg=None):
    """Poll until backend `pid` waits for an advisory lock; fail early if the statement
    in `bg` finished instead (it did not wait at all)."""

    def check():
        if bg is not None and bg.done():
            raise AssertionError(f"{bg.sql!r} finished instead of waiting: row={bg.row} error={bg.error!r}")
        return is_waiting(admin, pid)

    wait_until(check, what=f"backend {pid} to wait for an advisory lock")


# Lock tags, from the keys computed the way every client does, checked against the server.

def named_tag(conn, name):
    """(classid, objid, objsubid) of pg_locks for lock_named(name): the bigint key split
    into its high and low 32 bits, objsubid 1."""
    k = one(conn, "SELECT named_lock_key(%s)", (name,))
    assert k == key64(name), f"named_lock_key({name!r}) breaks the md5 contract"
    return (u32(k >> 32), u32(k), 1)


def pair_tag(conn, namespace, item):
    """(classid, objid, objsubid) for lock_pair(namespace, item): key32(namespace) and
    key32(name) (or the id itself), objsubid 2."""
    k1 = one(conn, "SELECT named_lock_key32(%s)", (namespace,))
    assert k1 == key32(namespace)
    if isinstance(item, int):
        k2 = item
    else:
        k2 = one(conn, "SELECT named_lock_key32(%s)", (item,))
        assert k2 == key32(item)
    return (u32(k1), u32(k2), 2)


def advisory_rows(admin, pids):
    """The advisory lock rows of these backends: {(pid, classid, objid, objsubid, mode, granted)}."""
    rows = admin.execute(
        "SELECT pid, classid::int8, objid::int8, objsubid::int4, mode, granted FROM pg_locks "
        "WHERE locktype = 'advisory' AND pid = ANY(%s)",
        (list(pids),),
    ).fetchall()
    return set(rows)


def kill_backend(pid, sig="KILL"):
    """Send a signal to a server process: directly when we may (root, or the same user
    as the server), else through sudo (a non-root user running servers as postgres)."""
    import signal

    if sig == "KILL" and os.environ.get("FAULTS_KILLED"):
        # scripts/fault-tests.sh checks that these are the only crashes in the logs
        with open(os.environ["FAULTS_KILLED"], "a", encoding="utf-8") as f:
            f.write(f"{pid}\n")
    try:
        os.kill(pid, getattr(signal, "SIG" + sig))
    except PermissionError:
        subprocess.run(["sudo", "-n", "kill", "-" + sig, str(pid)], check=True, timeout=30)

