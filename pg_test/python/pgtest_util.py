"""What the pytest suites in this folder (faults, failover, robustness, properties) share:
the FOO_* environment variables a suite's script passes, polling, connecting while a
server comes back, the first column of a row, SQLSTATEs, the clients' keys, and the
connections a test opened. pytest.ini (pythonpath) puts this folder on sys.path for every
suite, however its script runs pytest."""

import hashlib
import os
import time

import psycopg
import pytest


def env_reader(script):
    """The `env(name)` of a suite that `script` runs: the value of the environment
    variable `name`, which the script sets. A missing one fails the test (a test that
    silently skips would prove nothing)."""

    def env(name):
        value = os.environ.get(name)
        if not value:
            pytest.fail(f"{name} is not set: run the suite with {script}", pytrace=False)
        return value

    return env


def wait_until(pred, timeout, what="condition", interval=0.1):
    """Call `pred` every `interval` seconds until it returns a true value, and return
    that; fail once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def connect_retry(dsn, timeout=60.0, connect_timeout=10, **kw):
    """Connect, retrying while the server refuses (starting up, in crash recovery)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return psycopg.connect(dsn, connect_timeout=connect_timeout, **kw)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def one(conn, sql, params=None):
    """The first column of the first row."""
    row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]


def sqlstate(exc):
    return getattr(getattr(exc, "diag", None), "sqlstate", None)


# Keys, computed the way every client does (DESIGN.md §2): the md5 of the name's UTF-8
# form, in every database.

def key64(name: str) -> int:
    """named_lock_key(name)."""
    return int.from_bytes(hashlib.md5(name.encode()).digest()[:8], "big", signed=True)


def key32(name: str) -> int:
    """named_lock_key32(name)."""
    return int.from_bytes(hashlib.md5(name.encode()).digest()[:4], "big", signed=True)


def u32(k: int) -> int:
    return k & 0xFFFFFFFF


class Connections:
    """The connections a test opened, closed at its teardown even when the test (or the
    fault it injected) already broke them."""

    def __init__(self):
        self.conns = []

    def keep(self, conn):
        self.conns.append(conn)
        return conn

    def close(self):
        for conn in self.conns:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - broken on purpose, or its server is gone
                pass
