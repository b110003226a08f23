"""The named_locks client against a real server, with real concurrent connections."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker, create_async_engine

from conftest import DSN, PROMPTLY
from named_locks import (
    LockNotAcquired,
    SessionLock,
    XactLock,
    advisory_lock,
    async_url,
    lock_key,
    lock_key32,
    sqlstate,
)

pytestmark = pytest.mark.asyncio


async def backend_pid(conn: AsyncConnection) -> int:
    """The server pid of a SQLAlchemy connection, without running a statement on it."""
    raw = await conn.get_raw_connection()
    return raw.driver_connection.get_server_pid()


async def test_lock_key_matches_the_server(observer):
    for n in ["daily-report-job", "", "ü" * 100, "account:17", "x" * 5000, "名前"]:
        assert await observer.conn.fetchval("SELECT named_lock_key($1)", n) == lock_key(n), n
        assert await observer.conn.fetchval("SELECT named_lock_key32($1)", n) == lock_key32(n), n


async def test_session_lock_excludes_another_application(engine, engine2, observer, name):
    a = SessionLock(engine, name)
    assert await a.acquire() is True
    assert a.is_acquired
    apid = await backend_pid(a.connection)
    assert await observer.holders(name) == [apid]

    b = SessionLock(engine2, name)
    assert await b.acquire(blocking=False) is False
    assert not b.is_acquired
    assert b.connection is None, "a failed try keeps no connection checked out"
    assert engine2.pool.checkedout() == 0

    assert await a.release() is True
    assert not a.is_acquired
    assert a.connection is None and engine.pool.checkedout() == 0
    assert await observer.holders(name) == []
    assert await a.release() is False, "nothing left to release"

    assert await b.acquire(blocking=False) is True
    assert await observer.holders(name) == [await backend_pid(b.connection)]
    assert await b.release() is True


async def test_lock_holder_is_idle_not_idle_in_transaction(engine, observer, name):
    # A job may hold its lock for hours; an open transaction would pin the xmin horizon.
    async with SessionLock(engine, name) as lock:
        pid = await backend_pid(lock.connection)
        assert not lock.connection.in_transaction()
        state = await observer.conn.fetchval("SELECT state FROM pg_stat_activity WHERE pid = $1", pid)
        assert state == "idle"


async def test_session_lock_given_a_session_survives_its_commits(engine, engine2, observer, name):
    sessions = async_sessionmaker(engine)
    async with sessions() as session:
        lock = SessionLock(session, name)
        assert await lock.acquire()
        pid = await backend_pid(lock.connection)
        # the session's own connection comes and goes with its transactions
        await session.execute(text("SELECT 1"))
        await session.commit()
        await session.execute(text("SELECT 1"))
        await session.rollback()
        assert await observer.holders(name) == [pid]
        assert not await SessionLock(engine2, name).acquire(blocking=False)
        assert await lock.release()
    assert await observer.holders(name) == []
    assert engine.pool.checkedout() == 0


async def test_why_session_locks_pin_a_connection(observer, name):
    """The failure the client avoids: a session lock taken through an AsyncSession stays
    on the pooled connection after commit, held by no code, until that connection closes."""
    eng = create_async_engine(async_url(DSN), pool_size=2)
    sessions = async_sessionmaker(eng)
    async with sessions() as session:
        await session.execute(text("SELECT lock_named(:n)"), {"n": name})
        await session.commit()
    assert eng.pool.checkedout() == 0
    (leaked,) = await observer.holders(name)
    assert await observer.conn.fetchval("SELECT state FROM pg_stat_activity WHERE pid = $1", leaked) == "idle"
    await eng.dispose()
    await observer.until("the lock goes with the connection", lambda: _empty(observer.holders(name)))


async def _empty(coro) -> bool:
    return not await coro


async def test_connection_bound_lock_leaves_the_callers_transaction_alone(engine, observer, name):
    async with engine.connect() as conn:
        pid = await backend_pid(conn)
        lock = SessionLock(conn, name)
        assert await lock.acquire()
        assert not conn.in_transaction(), "the lock call's own transaction is committed"

        await conn.execute(text("CREATE TEMP TABLE rolled_back (x int)"))
        assert await lock.acquire(), "re-entrant"
        assert conn.in_transaction(), "the caller's transaction is not committed by the lock"
        await conn.rollback()
        assert await observer.holders(name) == [pid], "session locks survive ROLLBACK"
        assert (await conn.execute(text("SELECT to_regclass('pg_temp.rolled_back')"))).scalar() is None
        await conn.rollback()

        assert await lock.release() and lock.is_acquired, "two acquires need two releases"
        assert await observer.holders(name) == [pid]
        assert await lock.release() and not lock.is_acquired
        assert await observer.holders(name) == []
        assert lock.connection is conn and not conn.closed, "the caller's connection stays open"


async def test_blocking_acquire_waits_for_the_holder(engine, engine2, observer, name):
    a = SessionLock(engine, name)
    await a.acquire()
    apid = await backend_pid(a.connection)
    b = SessionLock(engine2, name)
    task = asyncio.create_task(b.acquire())
    (waiter,) = await observer.until("b waits", lambda: observer.waiters(name))
    blocked_by = await observer.conn.fetchval(
        "SELECT blocked_by FROM advisory_locks_v WHERE pid = $1 AND NOT granted", waiter
    )
    assert blocked_by == [apid]
    assert await observer.conn.fetchval(
        "SELECT lock_name FROM advisory_locks_v WHERE pid = $1", waiter
    ) == name
    assert not task.done()
    assert await a.release()
    assert await asyncio.wait_for(task, PROMPTLY) is True
    assert await observer.holders(name) == [waiter]
    assert await b.release()


async def test_timeout_gives_up_and_holds_nothing(engine, engine2, observer, name):
    a = SessionLock(engine, name)
    await a.acquire()
    apid = await backend_pid(a.connection)
    b = SessionLock(engine2, name)
    assert await b.acquire(timeout=0.2) is False
    assert await b.acquire(timeout=timedelta(milliseconds=50)) is False
    assert await b.acquire(timeout=0) is False
    assert not b.is_acquired and b.connection is None
    assert await observer.holders(name) == [apid]
    assert await observer.waiters(name) == []
    stats = await observer.conn.fetchrow(
        "SELECT timeouts, try_failures FROM named_lock_stats WHERE lock_name = $1", name
    )
    # 0 is a try (README: it counts as a try failure)
    assert (stats["timeouts"], stats["try_failures"]) == (2, 1)

    task = asyncio.create_task(b.acquire(timeout=60))
    await observer.until("b waits", lambda: observer.waiters(name))
    await a.release()
    assert await asyncio.wait_for(task, PROMPTLY) is True
    await b.release()


async def test_blocking_false_with_timeout_is_refused(engine, name):
    with pytest.raises(ValueError):
        await SessionLock(engine, name).acquire(blocking=False, timeout=1)


async def test_async_with_releases_on_exit_and_on_error(engine, observer, name):
    async with SessionLock(engine, name) as lock:
        assert lock.is_acquired
        assert len(await observer.holders(name)) == 1
    assert await observer.holders(name) == []
    with pytest.raises(RuntimeError, match="boom"):
        async with SessionLock(engine, name):
            assert len(await observer.holders(name)) == 1
            raise RuntimeError("boom")
    assert await observer.holders(name) == []
    assert engine.pool.checkedout() == 0


async def test_advisory_lock_raises_when_not_acquired(engine, engine2, observer, name):
    ran = []
    async with advisory_lock(engine, name) as held:
        assert isinstance(held, SessionLock) and held.is_acquired
        with pytest.raises(LockNotAcquired) as e:
            async with advisory_lock(engine2, name, blocking=False):
                ran.append("try")
        assert e.value.name == name
        with pytest.raises(LockNotAcquired):
            async with advisory_lock(engine2, name, timeout=0.1):
                ran.append("timeout")
        assert len(await observer.holders(name)) == 1
    assert ran == [], "the body must not run without the lock"
    assert await observer.holders(name) == []
    async with advisory_lock(engine2, name, blocking=False):
        ran.append("free")
    assert ran == ["free"]
    assert engine.pool.checkedout() == 0 and engine2.pool.checkedout() == 0


async def test_shared_holders_exclude_exclusive(engine, engine2, observer, name):
    s1 = SessionLock(engine, name, shared=True)
    s2 = SessionLock(engine2, name, shared=True)
    assert await s1.acquire(blocking=False)
    assert await s2.acquire(blocking=False)
    pids = sorted([await backend_pid(s1.connection), await backend_pid(s2.connection)])
    assert await observer.holders(name) == pids
    modes = await observer.conn.fetchval(
        "SELECT array_agg(mode) FROM advisory_locks_v WHERE lock_name = $1 AND granted", name
    )
    assert modes == ["shared", "shared"]
    x = SessionLock(engine, name)
    assert not await x.acquire(blocking=False)
    assert await s1.release() and await s2.release()
    assert await x.acquire(blocking=False)
    assert not await SessionLock(engine2, name, shared=True).acquire(blocking=False)
    await x.release()


async def test_session_lock_on_many_names_is_all_or_nothing(engine, engine2, observer, name):
    a, b, c = f"{name}-a", f"{name}-b", f"{name}-c"
    lock = SessionLock(engine, [b, a, b])  # duplicates folded, any order
    assert await lock.acquire()
    pid = await backend_pid(lock.connection)
    assert await observer.holders(a) == [pid] and await observer.holders(b) == [pid]
    other = SessionLock(engine2, [c, b])
    assert not await other.acquire(blocking=False)
    assert not await other.acquire(timeout=0.1)
    assert await observer.holders(c) == [], "a failed _many call holds none of its names"
    assert await lock.release(), "unlock_many released both distinct names"
    assert await observer.holders(a) == [] and await observer.holders(b) == []
    assert await other.acquire(timeout=PROMPTLY)
    await other.release()
    with pytest.raises(ValueError):
        SessionLock(engine, [a, b], shared=True)


async def test_xact_lock_lives_as_long_as_the_transaction(engine, observer, name):
    sessions = async_sessionmaker(engine)
    async with sessions() as s1, sessions() as s2:
        assert await XactLock(s1, name).acquire()
        pid1 = (await s1.execute(text("SELECT pg_backend_pid()"))).scalar()
        assert await observer.holders(name) == [pid1]
        assert not await XactLock(s2, name).acquire(blocking=False)
        assert not await XactLock(s2, name).acquire(timeout=0.1)
        pid2 = (await s2.execute(text("SELECT pg_backend_pid()"))).scalar()

        task = asyncio.create_task(XactLock(s2, name).acquire())
        assert await observer.until("s2 waits", lambda: observer.waiters(name)) == [pid2]
        await s1.commit()
        assert await asyncio.wait_for(task, PROMPTLY) is True
        assert await observer.holders(name) == [pid2]
        await s2.rollback()
        assert await observer.holders(name) == [], "ROLLBACK releases it too"


async def test_xact_lock_shared_and_on_a_connection(engine, engine2, observer, name):
    async with engine.connect() as c1, engine2.connect() as c2:
        assert await XactLock(c1, name, shared=True).acquire()
        assert await XactLock(c2, name, shared=True).acquire(blocking=False)
        assert len(await observer.holders(name)) == 2
        assert not await XactLock(c2, name).acquire(blocking=False), "exclusive vs shared"
        await c1.commit()
        await c2.commit()
        assert await observer.holders(name) == []
    with pytest.raises(TypeError):
        XactLock(engine, name)


async def test_xact_lock_on_many_names(engine, observer, name):
    a, b = f"{name}-a", f"{name}-b"
    sessions = async_sessionmaker(engine)
    async with sessions() as s1, sessions() as s2:
        assert await XactLock(s1, [b]).acquire()
        assert not await XactLock(s2, [a, b]).acquire(blocking=False)
        assert not await XactLock(s2, [a, b]).acquire(timeout=0.1)
        assert await observer.holders(a) == [], "all or nothing"
        await s1.commit()
        assert await XactLock(s2, [a, b]).acquire(timeout=PROMPTLY)
        pid2 = (await s2.execute(text("SELECT pg_backend_pid()"))).scalar()
        assert await observer.holders(a) == [pid2] and await observer.holders(b) == [pid2]
        assert await XactLock(s2, []).acquire(), "an empty list is a no-op"
        await s2.commit()
        assert await observer.holders(a) == [] and await observer.holders(b) == []


@pytest.mark.parametrize(
    "lock_name, state",
    [("", "22023"), (None, "22004"), (["ok-name", None], "22004"), (["ok-name", ""], "22023")],
)
async def test_bad_names_raise_the_servers_error(engine, observer, lock_name, state):
    lock = SessionLock(engine, lock_name)
    with pytest.raises(DBAPIError) as e:
        await lock.acquire()
    assert sqlstate(e.value) == state
    assert not lock.is_acquired and engine.pool.checkedout() == 0
    async with async_sessionmaker(engine)() as session:
        with pytest.raises(DBAPIError) as e:
            await XactLock(session, lock_name).acquire(blocking=False)
        assert sqlstate(e.value) == state
    assert await observer.holders("ok-name") == []


async def test_negative_timeout_is_an_error(engine, name):
    with pytest.raises(DBAPIError) as e:
        await SessionLock(engine, name).acquire(timeout=-1)
    assert sqlstate(e.value) == "22023"


async def test_lock_timeout_raises_and_the_connection_stays_usable(engine, engine2, observer, name):
    a = SessionLock(engine, name)
    await a.acquire()
    apid = await backend_pid(a.connection)
    async with engine2.connect() as conn:
        await conn.execute(text("SET lock_timeout = '100ms'"))
        await conn.commit()
        b = SessionLock(conn, name)
        with pytest.raises(DBAPIError) as e:
            await b.acquire()
        assert sqlstate(e.value) == "55P03"
        assert not b.is_acquired
        assert not conn.in_transaction(), "the failed lock call's transaction was rolled back"
        assert (await conn.execute(text("SELECT 1"))).scalar() == 1
    assert await observer.holders(name) == [apid]
    await a.release()


async def test_statement_timeout_on_a_pooled_lock_returns_the_connection(engine, observer, name):
    a = SessionLock(engine, name)
    await a.acquire()
    apid = await backend_pid(a.connection)
    eng = create_async_engine(async_url(DSN), connect_args={"server_settings": {"statement_timeout": "200"}})
    try:
        b = SessionLock(eng, name)
        with pytest.raises(DBAPIError) as e:
            await b.acquire()
        assert sqlstate(e.value) == "57014"
        assert b.connection is None and eng.pool.checkedout() == 0
    finally:
        await eng.dispose()
    assert await observer.holders(name) == [apid]
    assert await observer.waiters(name) == []
    await a.release()


async def test_cancelled_acquire_leaves_nothing_behind(engine, engine2, observer, name):
    a = SessionLock(engine, name)
    await a.acquire()
    b = SessionLock(engine2, name)
    task = asyncio.create_task(b.acquire())
    await observer.until("b waits", lambda: observer.waiters(name))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not b.is_acquired and b.connection is None
    await observer.until("the cancelled waiter is gone", lambda: _empty(observer.waiters(name)))
    await a.release()
    assert await observer.holders(name) == [], "the cancelled waiter must not get the lock later"
    again = SessionLock(engine, name)
    assert await again.acquire(blocking=False)
    await again.release()


async def test_deadlock_is_reported_to_one_side(engine, engine2, observer, name):
    n1, n2 = f"{name}-1", f"{name}-2"
    async with engine.connect() as c1, engine2.connect() as c2:
        held1, held2 = SessionLock(c1, n1), SessionLock(c2, n2)
        assert await held1.acquire()
        assert await held2.acquire()
        t1 = asyncio.create_task(SessionLock(c1, n2).acquire())
        await observer.until("c1 waits", lambda: observer.waiters(n2))
        t2 = asyncio.create_task(SessionLock(c2, n1).acquire())
        done, _ = await asyncio.wait({t1, t2}, timeout=PROMPTLY, return_when=asyncio.FIRST_COMPLETED)
        assert len(done) == 1, "the deadlock detector aborts exactly one wait"
        victim = done.pop()
        assert isinstance(victim.exception(), DBAPIError)
        assert sqlstate(victim.exception()) == "40P01"
        survivor, victims_lock = (t2, held1) if victim is t1 else (t1, held2)
        assert await victims_lock.release()
        assert await asyncio.wait_for(survivor, PROMPTLY) is True


async def test_cancel_on_a_callers_connection_ends_its_session(engine, engine2, observer, name):
    """The documented caveat: SQLAlchemy invalidates a connection whose query was
    cancelled, so its server session and all its session locks end. acquire(timeout=)
    is the clean way to bound a wait on a shared connection."""
    n1, n2 = f"{name}-1", f"{name}-2"
    other = SessionLock(engine2, n2)
    await other.acquire()
    async with engine.connect() as conn:
        held = SessionLock(conn, n1)
        await held.acquire()
        pid = await backend_pid(conn)
        assert await SessionLock(conn, n2).acquire(timeout=0.1) is False
        assert await observer.holders(n1) == [pid], "a timeout keeps the connection and its locks"
        waiting = SessionLock(conn, n2)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(waiting.acquire(), 0.3)
        assert conn.invalidated and not waiting.is_acquired
        await observer.until("the session ended", lambda: _empty(observer.holders(n1)))
        assert await observer.waiters(n2) == []
        # `held` cannot know; its release finds nothing on the new session and says so
        assert await held.release() is False
        assert not held.is_acquired
    await other.release()


async def test_a_pooled_lock_that_lost_part_of_its_locks_is_not_pooled_again(engine, observer, name):
    a, b = f"{name}-a", f"{name}-b"
    lock = SessionLock(engine, [a, b])
    await lock.acquire()
    # someone unlocks one of them behind the lock object's back
    await lock.connection.execute(text("SELECT unlock_named(:n)"), {"n": a})
    await lock.connection.commit()
    assert await observer.holders(b) != []
    assert await lock.release() is False, "unlock_many released 1 of 2"
    assert not lock.is_acquired and lock.connection is None
    assert await observer.holders(a) == [] and await observer.holders(b) == []
    assert engine.pool.checkedout() == 0
