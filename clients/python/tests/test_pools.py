"""A session lock never stays behind on a connection returned to the pool: pools of one
connection, where the next checkout is the very connection the lock used."""

from __future__ import annotations

import asyncio

import pytest

from conftest import ASYNC_ONLY, backend_pid
from pg_named_locks import LockNotAcquired


async def next_checkout(flavor, pool, observer):
    """(pid, advisory locks held) of the pool's connection, checked out again."""
    async with flavor.connection(pool) as conn:
        pid = await backend_pid(conn)
        if flavor.kind == "sqlalchemy":
            assert await conn.get_isolation_level() != "AUTOCOMMIT", "the pool reset the lock's autocommit"
        else:
            assert conn.autocommit is False, "the lock restored the pool connection's autocommit setting"
        return pid, observer.advisory_locks_of(pid)


async def test_acquire_release_leaves_nothing_on_the_pooled_connection(flavor, observer, name):
    async with flavor.pool(1) as pool:
        for kwargs in ({}, {"shared": True}, {"fenced": False}, {"lease": 1}):
            lock = flavor.session_lock(pool, name, **kwargs)
            assert await lock.acquire()
            assert await lock.acquire(), "re-entrant: two holds on the connection"
            pid = await lock.pid()
            assert observer.holders(name) == [pid]
            assert await lock.release() and await lock.release()
            assert flavor.checked_out(pool) == 0
            assert await next_checkout(flavor, pool, observer) == (pid, 0), kwargs
        lock = flavor.session_lock(pool, [f"{name}-1", f"{name}-2"])
        assert await lock.acquire()
        pid = await lock.pid()
        assert observer.advisory_locks_of(pid) == 2
        assert await lock.release()
        assert await next_checkout(flavor, pool, observer) == (pid, 0)
        # The lease ended with the unlock: the connection is not ended a lease later.
        await asyncio.sleep(1.5)
        assert observer.alive(pid)
        assert await next_checkout(flavor, pool, observer) == (pid, 0)


async def test_an_exception_inside_with_still_releases(flavor, observer, name):
    async with flavor.pool(1) as pool:
        lock = flavor.session_lock(pool, name, lease=5)
        pid = None
        with pytest.raises(RuntimeError, match="boom"):
            async with flavor.locked(lock):
                pid = await lock.pid()
                assert observer.advisory_locks_of(pid) == 1
                raise RuntimeError("boom")
        assert flavor.checked_out(pool) == 0
        assert await next_checkout(flavor, pool, observer) == (pid, 0)
        with pytest.raises(RuntimeError):
            async with flavor.advisory_lock(pool, name) as got:
                assert got
                raise RuntimeError("boom")
        assert await next_checkout(flavor, pool, observer) == (pid, 0)


async def test_not_acquired_gives_the_connection_back(flavor, pool2, observer, name):
    holder = flavor.session_lock(pool2, name)
    await holder.acquire()
    async with flavor.pool(1) as pool:
        with pytest.raises(LockNotAcquired):
            async with flavor.locked(flavor.session_lock(pool, name, blocking=False)):
                pass
        assert flavor.checked_out(pool) == 0
        pid, locks = await next_checkout(flavor, pool, observer)
        assert locks == 0
        assert not await flavor.session_lock(pool, name).acquire(timeout=0.05)
        assert await next_checkout(flavor, pool, observer) == (pid, 0)
    await holder.release()


async def test_a_lock_out_of_step_with_the_server_is_not_pooled_again(flavor, observer, name):
    """Partly unlocked behind the object's back: the release fails, and the connection
    (which still holds the other name) is closed instead of handed to the next user."""
    async with flavor.pool(1) as pool:
        a, b = f"{name}-a", f"{name}-b"
        lock = flavor.session_lock(pool, [a, b])
        await lock.acquire()
        pid = await lock.pid()
        await lock.execute(f"SELECT unlock_named('{a}')")
        assert observer.holders(b) == [pid]
        assert await lock.release() is False, "unlock_many released 1 of 2"
        assert not lock.is_acquired and lock.connection is None and lock.lost is not None
        await observer.auntil("the session ended", lambda: observer.holders(b) == [])
        new_pid, locks = await next_checkout(flavor, pool, observer)
        assert new_pid != pid and locks == 0


@ASYNC_ONLY
async def test_a_cancelled_wait_never_returns_a_locked_connection(flavor, observer, name):
    async with flavor.pool(5) as other:
        holder = flavor.session_lock(other, name)
        await holder.acquire()
        async with flavor.pool(1) as pool:
            waiting = flavor.session_lock(pool, name)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(waiting.acquire(), 0.3)
            assert flavor.checked_out(pool) == 0
            await holder.release()
            _, locks = await next_checkout(flavor, pool, observer)
            assert locks == 0
            await asyncio.sleep(0.2)
            assert observer.holders(name) == [], "the cancelled request did not get the lock later"
