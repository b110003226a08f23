"""What only the psycopg flavors have: plain synchronous use from threads, conninfo
binds, the renewal thread, and the transaction-block check of the transaction locks."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from conftest import DSN
from pg_named_locks import LockNotAcquired, NamedLockError
from pg_named_locks.psycopg import (
    AsyncSessionLock,
    AsyncXactLock,
    SessionLock,
    XactLock,
    advisory_lock,
    async_advisory_lock,
)


@pytest.fixture
def sync_pool():
    pool = ConnectionPool(DSN, min_size=1, max_size=8, open=True)
    yield pool
    pool.close()


def test_threads_take_turns(sync_pool, observer, name):
    """Eight threads, each with its own lock object on one pool, increment a counter
    under the lock with a read-modify-write that loses updates without it."""
    counter = {"value": 0, "inside": 0, "max_inside": 0}
    errors = []

    def worker():
        try:
            for _ in range(5):
                with SessionLock(sync_pool, name, timeout=30):
                    counter["inside"] += 1
                    counter["max_inside"] = max(counter["max_inside"], counter["inside"])
                    value = counter["value"]
                    time.sleep(0.002)
                    counter["value"] = value + 1
                    counter["inside"] -= 1
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert counter["value"] == 40 and counter["max_inside"] == 1
    assert observer.holders(name) == []
    assert sync_pool.get_stats()["pool_size"] <= 8


def test_conninfo_bind_opens_and_closes_its_own_connection(observer, name):
    lock = SessionLock(DSN, name)
    assert lock.connection is None
    with lock:
        pid = lock.connection.info.backend_pid
        assert lock.connection.autocommit
        assert observer.holders(name) == [pid]
        assert lock.token is not None
    assert lock.connection is None
    observer.until("its connection is closed", lambda: not observer.alive(pid))
    with advisory_lock(DSN, name, blocking=False) as got:
        assert got
        with advisory_lock(DSN, name, blocking=False) as other:
            assert other is False


def test_renewal_thread_is_a_daemon_and_stops_on_release(sync_pool, name):
    lock = SessionLock(sync_pool, name, lease=3)
    assert lock.acquire()
    thread = lock._renewer
    assert thread is not None and thread.daemon and thread.is_alive()
    assert lock.acquire(), "re-entrant: the same renewal thread"
    assert lock._renewer is thread
    assert lock.release() and thread.is_alive()
    assert lock.release()
    thread.join(5)
    assert not thread.is_alive() and lock._renewer is None


def test_given_connection_in_autocommit(observer, name):
    with psycopg.connect(DSN, autocommit=True) as conn:
        lock = SessionLock(conn, name, lease=1)
        assert lock.acquire()
        time.sleep(1.6)
        assert lock.is_acquired and observer.holders(name) == [conn.info.backend_pid]
        assert lock.release()
        # a transaction lock needs a transaction block in autocommit mode
        with pytest.raises(NamedLockError, match="transaction"):
            XactLock(conn, name).acquire()
        with conn.transaction():
            xl = XactLock(conn, name)
            assert xl.connection is conn
            assert xl.acquire() and xl.token is not None
            assert observer.check(name, xl.token)
        assert observer.holders(name) == []


def test_wrong_binds_are_refused(name):
    with pytest.raises(TypeError):
        SessionLock(123, name)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        XactLock(DSN, name)  # type: ignore[arg-type]


def test_context_manager_reports_not_acquired_with_the_name(sync_pool, name):
    with SessionLock(sync_pool, name):
        with pytest.raises(LockNotAcquired) as e:
            with SessionLock(sync_pool, name, blocking=False):
                pass
        assert e.value.name == name


async def test_async_conninfo_bind_and_type_checks(observer, name):
    lock = AsyncSessionLock(DSN, name)
    async with lock:
        pid = lock.connection.info.backend_pid
        assert observer.holders(name) == [pid]
    assert lock.connection is None
    async with async_advisory_lock(DSN, name) as got:
        assert got
    with psycopg.connect(DSN) as sync_conn:
        with pytest.raises(TypeError):
            AsyncSessionLock(sync_conn, name)
        with pytest.raises(TypeError):
            AsyncXactLock(sync_conn, name)  # type: ignore[arg-type]
    aconn = await psycopg.AsyncConnection.connect(DSN, autocommit=True)
    try:
        with pytest.raises(TypeError):
            SessionLock(aconn, name)  # type: ignore[arg-type]
        with pytest.raises(NamedLockError, match="transaction"):
            await AsyncXactLock(aconn, name).acquire()
        async with aconn.transaction():
            xl = AsyncXactLock(aconn, name)
            assert xl.connection is aconn and xl.name == name
            assert await xl.acquire(timeout=1) and observer.check(name, xl.token)
    finally:
        await aconn.close()


async def test_async_renewal_task_stops_on_release(name):
    lock = AsyncSessionLock(DSN, name, lease=3)
    assert await lock.acquire()
    task = lock._renewer
    assert task is not None and not task.done()
    assert await lock.release()
    assert lock._renewer is None
    try:
        await task
    except BaseException:
        pass
    assert task.done()
