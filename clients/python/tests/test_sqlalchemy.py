"""What only the SQLAlchemy flavor has: AsyncSession binds, SQLAlchemy's invalidation of
cancelled connections, and the deadlock detector's error through DBAPIError."""

from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from conftest import DSN, PROMPTLY, backend_pid
from pg_named_locks import sqlstate
from pg_named_locks.sqlalchemy import SessionLock, XactLock, advisory_lock, async_url


@pytest_asyncio.fixture
async def engine():
    eng = create_async_engine(async_url(DSN), pool_size=10, max_overflow=10)
    yield eng
    await eng.dispose()


@pytest_asyncio.fixture
async def engine2():
    eng = create_async_engine(async_url(DSN), pool_size=5)
    yield eng
    await eng.dispose()


def test_async_url():
    assert async_url("postgresql://u@h:1/d") == "postgresql+asyncpg://u@h:1/d"
    assert async_url("postgres://u@h/d") == "postgresql+asyncpg://u@h/d"
    assert async_url("postgresql+psycopg://u@h/d") == "postgresql+psycopg://u@h/d"


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
        assert observer.holders(name) == [pid]
        assert not await SessionLock(engine2, name).acquire(blocking=False)
        assert await lock.release()
    assert observer.holders(name) == []
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
    (leaked,) = observer.holders(name)
    assert observer.state(leaked) == "idle"
    await eng.dispose()
    await observer.auntil("the lock goes with the connection", lambda: observer.holders(name) == [])


async def test_xact_lock_in_a_session(engine, observer, name):
    sessions = async_sessionmaker(engine)
    async with sessions() as s1, sessions() as s2:
        assert await XactLock(s1, [f"{name}-2", f"{name}-1"]).acquire()
        assert not await XactLock(s2, f"{name}-1").acquire(blocking=False)
        await s1.commit()
        assert await XactLock(s2, f"{name}-1").acquire(blocking=False)
        await s2.rollback()
    with pytest.raises(TypeError):
        XactLock(engine, name)  # type: ignore[arg-type]


async def test_deadlock_is_reported_to_one_side(engine, engine2, observer, name):
    n1, n2 = f"{name}-1", f"{name}-2"
    async with engine.connect() as c1, engine2.connect() as c2:
        held1, held2 = SessionLock(c1, n1), SessionLock(c2, n2)
        assert await held1.acquire()
        assert await held2.acquire()
        t1 = asyncio.create_task(SessionLock(c1, n2).acquire())
        await observer.auntil("c1 waits", lambda: observer.waiters(n2))
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
        assert observer.holders(n1) == [pid], "a timeout keeps the connection and its locks"
        waiting = SessionLock(conn, n2)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(waiting.acquire(), 0.3)
        assert conn.invalidated and not waiting.is_acquired
        await observer.auntil("the session ended", lambda: observer.holders(n1) == [])
        assert observer.waiters(n2) == []
        # `held` finds its connection invalidated: lost, and release says so
        assert not held.is_acquired and held.lost is not None
        assert await held.release() is False
    await other.release()


async def test_a_renewed_lease_needs_a_dedicated_connection(engine, name):
    async with engine.connect() as conn:
        with pytest.raises(ValueError, match="auto_renew"):
            SessionLock(conn, name, lease=5)
        lock = SessionLock(conn, name, lease=1, auto_renew=False)
        assert await lock.acquire()
        await asyncio.sleep(0.5)
        assert await lock.renew()
        await asyncio.sleep(0.7)
        assert lock.is_acquired and await lock.release()


async def test_advisory_lock_on_a_session(engine, observer, name):
    sessions = async_sessionmaker(engine)
    async with sessions() as session:
        async with advisory_lock(session, name, blocking=False) as got:
            assert got and len(observer.holders(name)) == 1
    assert observer.holders(name) == [] and engine.pool.checkedout() == 0
