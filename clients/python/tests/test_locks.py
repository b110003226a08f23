"""Session and transaction locks of every flavor (psycopg sync, psycopg asyncio,
SQLAlchemy asyncio) against the real server, with real concurrent connections."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from conftest import ASYNC_ONLY, PROMPTLY, backend_pid, execute, run_sql
from pg_named_locks import LockNotAcquired, NamedLockError, sqlstate


async def test_session_lock_excludes_another_application(flavor, pool, pool2, observer, name):
    a = flavor.session_lock(pool, name)
    assert a.lock.name == name and name in repr(a.lock)
    assert await a.acquire() is True
    assert a.is_acquired
    apid = await a.pid()
    assert observer.holders(name) == [apid]
    assert observer.state(apid) == "idle", "no transaction left open by the lock call"

    b = flavor.session_lock(pool2, name)
    assert await b.acquire(blocking=False) is False
    assert await b.acquire(timeout=0.1) is False
    assert await b.acquire(timeout=timedelta(milliseconds=50)) is False
    assert await b.acquire(timeout=0) is False
    assert not b.is_acquired
    assert b.connection is None, "a failed try keeps no connection checked out"
    assert flavor.checked_out(pool2) == 0

    assert await a.release() is True
    assert not a.is_acquired and a.lost is None
    assert a.connection is None and flavor.checked_out(pool) == 0
    assert observer.holders(name) == []
    assert await a.release() is False, "nothing left to release"

    assert await b.acquire(blocking=False) is True
    assert observer.holders(name) == [await b.pid()]
    assert await b.release() is True


async def test_blocking_acquire_waits_for_the_holder(flavor, pool, pool2, observer, name):
    a = flavor.session_lock(pool, name)
    await a.acquire()
    apid = await a.pid()
    b = flavor.session_lock(pool2, name)
    task = asyncio.create_task(b.acquire())
    (waiter,) = await observer.auntil("b waits", lambda: observer.waiters(name))
    assert observer.scalar("SELECT blocked_by FROM advisory_locks_v WHERE pid = %s AND NOT granted", waiter) == [apid]
    assert observer.scalar("SELECT lock_name FROM advisory_locks_v WHERE pid = %s", waiter) == name
    assert not task.done()
    assert await a.release()
    assert await asyncio.wait_for(task, PROMPTLY) is True
    assert observer.holders(name) == [waiter]
    assert await b.release()


async def test_timed_acquire_gets_the_lock_when_it_is_freed(flavor, pool, pool2, observer, name):
    a = flavor.session_lock(pool, name)
    await a.acquire()
    b = flavor.session_lock(pool2, name)
    task = asyncio.create_task(b.acquire(timeout=60))
    await observer.auntil("b waits", lambda: observer.waiters(name))
    await a.release()
    assert await asyncio.wait_for(task, PROMPTLY) is True
    stats = observer.conn.execute(
        "SELECT acquisitions, waits FROM named_lock_stats WHERE lock_name = %s", (name,)
    ).fetchone()
    assert stats == (2, 1)
    await b.release()


async def test_reentrant_acquires_need_as_many_releases(flavor, pool, observer, name):
    lock = flavor.session_lock(pool, name)
    assert await lock.acquire() and await lock.acquire(blocking=False) and await lock.acquire(timeout=1)
    pid = await lock.pid()
    assert observer.scalar("SELECT count(*) FROM pg_locks WHERE pid = %s AND locktype = 'advisory'", pid) == 1
    assert await lock.release() and await lock.release()
    assert lock.is_acquired and observer.holders(name) == [pid]
    assert await lock.release() and not lock.is_acquired
    assert observer.holders(name) == [] and flavor.checked_out(pool) == 0


async def test_shared_holders_exclude_exclusive(flavor, pool, pool2, observer, name):
    s1 = flavor.session_lock(pool, name, shared=True)
    s2 = flavor.session_lock(pool2, name, shared=True)
    assert await s1.acquire(blocking=False)
    assert await s2.acquire(blocking=False)
    assert s1.token is None and s2.token is None, "shared grants have no fencing token"
    assert observer.holders(name) == sorted([await s1.pid(), await s2.pid()])
    modes = observer.scalar("SELECT array_agg(mode) FROM advisory_locks_v WHERE lock_name = %s AND granted", name)
    assert modes == ["shared", "shared"]
    x = flavor.session_lock(pool, name)
    assert not await x.acquire(blocking=False)
    assert not await x.acquire(timeout=0.1)
    assert await s1.release() and await s2.release()
    assert await x.acquire(blocking=False)
    assert not await flavor.session_lock(pool2, name, shared=True).acquire(blocking=False)
    await x.release()


async def test_many_names_are_all_or_nothing(flavor, pool, pool2, observer, name):
    a, b, c = f"{name}-a", f"{name}-b", f"{name}-c"
    lock = flavor.session_lock(pool, [b, a, b])  # duplicates folded, any order
    assert await lock.acquire()
    assert lock.token is None, "many-name locks have no token"
    pid = await lock.pid()
    assert observer.holders(a) == [pid] and observer.holders(b) == [pid]
    other = flavor.session_lock(pool2, [c, b])
    assert not await other.acquire(blocking=False)
    assert not await other.acquire(timeout=0.1)
    assert observer.holders(c) == [], "a failed _many call holds none of its names"
    assert await lock.release(), "unlock_many released both distinct names"
    assert observer.holders(a) == [] and observer.holders(b) == []
    assert await other.acquire(timeout=PROMPTLY)
    await other.release()
    with pytest.raises(ValueError):
        flavor.session_lock(pool, [a, b], shared=True)


async def test_context_manager_acquires_and_releases(flavor, pool, pool2, observer, name):
    lock = flavor.session_lock(pool, name)
    async with flavor.locked(lock) as held:
        assert held is lock.lock and lock.is_acquired
        assert len(observer.holders(name)) == 1
        busy = flavor.session_lock(pool2, name, blocking=False)
        with pytest.raises(LockNotAcquired) as e:
            async with flavor.locked(busy):
                pytest.fail("the body must not run without the lock")
        assert e.value.name == name
        with pytest.raises(LockNotAcquired):
            async with flavor.locked(flavor.session_lock(pool2, name, timeout=0.1)):
                pytest.fail("the body must not run without the lock")
        assert flavor.checked_out(pool2) == 0
    assert not lock.is_acquired and observer.holders(name) == []
    assert flavor.checked_out(pool) == 0


async def test_an_exception_in_the_body_still_releases(flavor, pool, observer, name):
    with pytest.raises(RuntimeError, match="boom"):
        async with flavor.locked(flavor.session_lock(pool, name)):
            assert len(observer.holders(name)) == 1
            raise RuntimeError("boom")
    assert observer.holders(name) == []
    assert flavor.checked_out(pool) == 0


async def test_advisory_lock_yields_whether_it_was_acquired(flavor, pool, pool2, observer, name):
    ran = []
    async with flavor.advisory_lock(pool, name) as got:
        assert got is True
        assert len(observer.holders(name)) == 1
        async with flavor.advisory_lock(pool2, name, blocking=False) as other:
            assert other is False
            ran.append("try")
        async with flavor.advisory_lock(pool2, name, timeout=0.1) as other:
            assert other is False
            ran.append("timeout")
        assert flavor.checked_out(pool2) == 0
    assert ran == ["try", "timeout"]
    assert observer.holders(name) == []
    async with flavor.advisory_lock(pool2, name, blocking=False) as got:
        assert got is True
    with pytest.raises(RuntimeError):
        async with flavor.advisory_lock(pool2, name, shared=True) as got:
            assert got and observer.scalar(
                "SELECT mode FROM advisory_locks_v WHERE lock_name = %s AND granted", name
            ) == "shared"
            raise RuntimeError("released anyway")
    assert observer.holders(name) == []
    assert flavor.checked_out(pool) == 0 and flavor.checked_out(pool2) == 0


async def test_lock_on_a_given_connection_leaves_its_transaction_alone(flavor, observer, name):
    async with flavor.own_connection() as conn:
        pid = await backend_pid(conn)
        lock = flavor.session_lock(conn, name)
        assert await lock.acquire()
        assert observer.state(pid) == "idle", "the lock call's own transaction is committed"
        assert lock.connection is conn

        # a transaction of the caller's, then a re-entrant acquire inside it
        await execute(conn, "CREATE TEMP TABLE rolled_back (x int)")
        assert await lock.acquire(), "re-entrant"
        assert observer.state(pid) == "idle in transaction", "the caller's transaction is not committed"
        await flavor.rollback(conn)
        assert observer.holders(name) == [pid], "session locks survive ROLLBACK"
        assert await run_sql(conn, "SELECT to_regclass('pg_temp.rolled_back') IS NULL") is True

        assert await lock.release() and lock.is_acquired, "two acquires need two releases"
        assert await lock.release() and not lock.is_acquired
        assert observer.holders(name) == []
        assert lock.connection is conn and not conn.closed, "the caller's connection stays open"


@pytest.mark.parametrize("lock_name, state", [("", "22023"), (None, "22004"), (["ok", None], "22004")])
async def test_bad_names_raise_the_servers_error(flavor, pool, observer, lock_name, state):
    lock = flavor.session_lock(pool, lock_name)
    with pytest.raises(Exception) as e:  # noqa: B017 - the driver's error class
        await lock.acquire()
    assert sqlstate(e.value) == state
    assert not lock.is_acquired and flavor.checked_out(pool) == 0


async def test_bad_arguments(flavor, pool, name):
    with pytest.raises(Exception) as e:  # noqa: B017 - the driver's error class
        await flavor.session_lock(pool, name).acquire(timeout=-1)
    assert sqlstate(e.value) == "22023"
    with pytest.raises(Exception) as e:  # noqa: B017
        await flavor.session_lock(pool, name, lease=0.5).acquire()
    assert sqlstate(e.value) == "22023", "a lease under 1 s"
    assert flavor.checked_out(pool) == 0
    with pytest.raises(ValueError):
        await flavor.session_lock(pool, name).acquire(blocking=False, timeout=1)
    with pytest.raises(ValueError):
        flavor.session_lock(pool, name, blocking=False, timeout=1)
    with pytest.raises(ValueError):
        flavor.session_lock(pool, name, shared=True, lease=10)
    with pytest.raises(NamedLockError):
        await flavor.session_lock(pool, name).renew()
    with pytest.raises(TypeError):
        flavor.session_lock(object(), name)


async def test_lock_timeout_raises_and_holds_nothing(flavor, pool, observer, name):
    a = flavor.session_lock(pool, name)
    await a.acquire()
    apid = await a.pid()
    async with flavor.own_connection() as conn:
        await run_sql(conn, "SELECT set_config('lock_timeout', '100ms', false)")
        b = flavor.session_lock(conn, name)
        with pytest.raises(Exception) as e:  # noqa: B017
            await b.acquire()
        assert sqlstate(e.value) == "55P03"
        assert not b.is_acquired
        assert await run_sql(conn, "SELECT 1") == 1, "the connection stays usable"
    assert observer.holders(name) == [apid]
    await a.release()


async def test_unlocked_behind_its_back_is_reported_as_lost(flavor, pool, observer, name):
    lock = flavor.session_lock(pool, name)
    await lock.acquire()
    pid = await lock.pid()
    assert await lock.execute(f"SELECT unlock_named('{name}')") is True
    assert await lock.release() is False
    assert "behind" in lock.lost.reason
    assert not observer.alive(pid) or observer.advisory_locks_of(pid) == 0
    assert flavor.checked_out(pool) == 0


async def test_a_terminated_connection_is_noticed(flavor, pool, observer, name):
    lock = flavor.session_lock(pool, name)
    await lock.acquire()
    pid = await lock.pid()
    assert observer.scalar("SELECT pg_terminate_backend(%s)", pid)
    await observer.auntil("the lock is free", lambda: observer.holders(name) == [])
    # found without a query: psycopg reads the closed socket, asyncpg has seen it close
    await observer.auntil("is_acquired turns False", lambda: not lock.is_acquired)
    assert lock.lost is not None and "connection" in lock.lost.reason
    assert await lock.release() is False
    assert flavor.checked_out(pool) == 0
    # the object can be used again, on a fresh connection
    assert await lock.acquire(blocking=False)
    assert lock.lost is None and await lock.pid() != pid
    assert await lock.release()


@ASYNC_ONLY
async def test_cancelled_acquire_leaves_nothing_behind(flavor, pool, pool2, observer, name):
    a = flavor.session_lock(pool, name)
    await a.acquire()
    b = flavor.session_lock(pool2, name)
    task = asyncio.create_task(b.acquire())
    await observer.auntil("b waits", lambda: observer.waiters(name))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not b.is_acquired and b.connection is None
    assert flavor.checked_out(pool2) == 0
    await observer.auntil("the cancelled waiter is gone", lambda: observer.waiters(name) == [])
    await a.release()
    assert observer.holders(name) == [], "the cancelled waiter must not get the lock later"
    again = flavor.session_lock(pool, name)
    assert await again.acquire(blocking=False)
    await again.release()


# -- transaction locks ---------------------------------------------------------------


async def test_xact_lock_lives_as_long_as_the_transaction(flavor, pool, observer, name):
    async with flavor.connection(pool) as c1, flavor.connection(pool) as c2:
        await execute(c1, "SELECT 1")
        await execute(c2, "SELECT 1")
        first = flavor.xact_lock(c1, name)
        assert await first.acquire()
        pid1 = await backend_pid(c1)
        assert observer.holders(name) == [pid1]
        assert not await flavor.xact_lock(c2, name).acquire(blocking=False)
        assert not await flavor.xact_lock(c2, name).acquire(timeout=0.1)
        pid2 = await backend_pid(c2)

        task = asyncio.create_task(flavor.xact_lock(c2, name).acquire())
        assert await observer.auntil("c2 waits", lambda: observer.waiters(name)) == [pid2]
        await flavor.commit(c1)
        assert await asyncio.wait_for(task, PROMPTLY) is True
        assert observer.holders(name) == [pid2]
        await flavor.rollback(c2)
        assert observer.holders(name) == [], "ROLLBACK releases it too"


async def test_xact_lock_shared_and_many(flavor, pool, observer, name):
    a, b = f"{name}-a", f"{name}-b"
    async with flavor.connection(pool) as c1, flavor.connection(pool) as c2:
        await execute(c1, "SELECT 1")
        await execute(c2, "SELECT 1")
        s1 = flavor.xact_lock(c1, name, shared=True)
        assert await s1.acquire() and s1.token is None
        assert await flavor.xact_lock(c2, name, shared=True).acquire(blocking=False)
        assert len(observer.holders(name)) == 2
        assert await flavor.xact_lock(c1, [b]).acquire()
        assert not await flavor.xact_lock(c2, [a, b]).acquire(blocking=False)
        assert observer.holders(b) == [await backend_pid(c1)]
        await flavor.commit(c1)
        assert await flavor.xact_lock(c2, [a, b]).acquire(timeout=PROMPTLY)
        assert await flavor.xact_lock(c2, []).acquire(), "an empty list is a no-op"
        await flavor.commit(c2)
        assert observer.holders(a) == observer.holders(b) == observer.holders(name) == []


async def test_xact_lock_token(flavor, pool, observer, name):
    async with flavor.connection(pool) as conn:
        await execute(conn, "SELECT 1")
        lock = flavor.xact_lock(conn, name)
        assert lock.lock.name == name and lock.token is None
        assert await lock.acquire()
        token = lock.token
        assert isinstance(token, int) and observer.check(name, token)
        await flavor.commit(conn)
        assert not observer.check(name, token), "the transaction ended, and its lock with it"
        await execute(conn, "SELECT 1")
        again = flavor.xact_lock(conn, name)
        assert await again.acquire(blocking=False)
        assert again.token > token
        plain = flavor.xact_lock(conn, f"{name}-plain", fenced=False)
        assert await plain.acquire() and plain.token is None
        await flavor.rollback(conn)

