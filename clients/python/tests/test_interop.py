"""A client that still computes keys itself and calls the built-in advisory-lock
functions, pg_advisory_lock(lock_key(name)), and the package's named locks are the same
locks, in both directions, for every flavor."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from conftest import DSN, PROMPTLY
from pg_named_locks import lock_key, lock_key32


@pytest.fixture
def legacy():
    conn = psycopg.connect(DSN, autocommit=True)
    yield conn
    conn.close()


def scalar(conn, sql, *params):
    return conn.execute(sql, params).fetchone()[0]


async def test_a_legacy_lock_excludes_a_named_lock_and_back(flavor, pool, legacy, name):
    key = lock_key(name)
    assert scalar(legacy, "SELECT pg_try_advisory_lock(%s)", key) is True
    named = flavor.session_lock(pool, name)
    assert await named.acquire(blocking=False) is False
    assert await named.acquire(timeout=0.1) is False
    assert scalar(legacy, "SELECT pg_advisory_unlock(%s)", key) is True

    assert await named.acquire(blocking=False) is True
    assert scalar(legacy, "SELECT pg_try_advisory_lock(%s)", key) is False
    assert scalar(legacy, "SELECT pg_try_advisory_lock_shared(%s)", key) is False
    assert await named.release()
    assert scalar(legacy, "SELECT pg_try_advisory_lock(%s)", key) is True
    assert scalar(legacy, "SELECT pg_advisory_unlock(%s)", key) is True


async def test_waits_cross_between_legacy_and_named(flavor, pool, legacy, observer, name):
    key = lock_key(name)
    pid = legacy.info.backend_pid
    scalar(legacy, "SELECT pg_advisory_lock(%s)::text", key)
    named = flavor.session_lock(pool, name)
    waiting = asyncio.create_task(named.acquire())
    (waiter,) = await observer.auntil("named waits for legacy", lambda: observer.waiters(name))
    assert observer.scalar("SELECT blocked_by FROM advisory_locks_v WHERE pid = %s AND NOT granted", waiter) == [pid]
    scalar(legacy, "SELECT pg_advisory_unlock(%s)", key)
    assert await asyncio.wait_for(waiting, PROMPTLY) is True

    # and the legacy client waits for the named lock
    legacy_wait = asyncio.create_task(asyncio.to_thread(scalar, legacy, "SELECT pg_advisory_lock(%s)::text", key))
    assert await observer.auntil("legacy waits for named", lambda: observer.waiters(name)) == [pid]
    await named.release()
    await asyncio.wait_for(legacy_wait, PROMPTLY)
    assert observer.holders(name) == [pid]
    scalar(legacy, "SELECT pg_advisory_unlock(%s)", key)


async def test_a_legacy_shared_lock_and_named_shared_locks_coexist(flavor, pool, legacy, name):
    key = lock_key(name)
    assert scalar(legacy, "SELECT pg_try_advisory_lock_shared(%s)", key)
    shared = flavor.session_lock(pool, name, shared=True)
    assert await shared.acquire(blocking=False)
    assert not await flavor.session_lock(pool, name).acquire(blocking=False)
    await shared.release()
    assert scalar(legacy, "SELECT pg_advisory_unlock_shared(%s)", key)


async def test_a_legacy_transaction_lock_excludes_a_transaction_lock(flavor, pool, legacy, name):
    async with flavor.connection(pool) as conn:
        with legacy.transaction():
            scalar(legacy, "SELECT pg_advisory_xact_lock(%s)::text", lock_key(name))
            assert not await flavor.xact_lock(conn, name).acquire(blocking=False)
            await flavor.rollback(conn)
        assert await flavor.xact_lock(conn, name).acquire(blocking=False)
        await flavor.commit(conn)


def test_the_two_key_space_is_lock_key32(legacy, observer, name):
    ns = f"{name}-ns"
    scalar(legacy, "SELECT pg_advisory_lock(%s, %s)::text", lock_key32(ns), lock_key32("item"))
    scalar(legacy, "SELECT pg_advisory_lock(%s, 42)::text", lock_key32(ns))
    assert observer.scalar("SELECT try_lock_pair(%s, 'item')", ns) is False
    assert observer.scalar("SELECT try_lock_pair(%s, 42)", ns) is False
    assert observer.scalar("SELECT try_lock_pair(%s, 43)", ns) is True
    assert observer.scalar("SELECT unlock_pair(%s, 43)", ns) is True
    scalar(legacy, "SELECT pg_advisory_unlock_all()::text")
    assert observer.scalar("SELECT try_lock_pair(%s, 'item') AND try_lock_pair(%s, 42)", ns, ns) is True
    assert observer.scalar("SELECT unlock_pair(%s, 'item') AND unlock_pair(%s, 42)", ns, ns) is True
