"""Fixtures for the pg-named-locks tests: a real server (PGNL_DSN, as
scripts/python-client-tests.sh sets it), an observer connection that looks at the server
from outside, unique lock names, and one adapter per client flavor -- psycopg
synchronous, psycopg asyncio, SQLAlchemy asyncio -- so that one test runs against all
three with the same (async) calls. The synchronous flavor's calls run in a worker
thread (asyncio.to_thread), as a threaded application would make them."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

import psycopg
import pytest
import pytest_asyncio
from psycopg_pool import AsyncConnectionPool, ConnectionPool
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from pg_named_locks import psycopg as pnl_psycopg
from pg_named_locks import sqlalchemy as pnl_sqlalchemy

DSN = os.environ.get("PGNL_DSN", "postgresql://postgres@127.0.0.1:23418/named_locks_python")
# Generous: "promptly" on a loaded 2-core CI machine.
PROMPTLY = 10.0
FLAVORS = ["psycopg", "psycopg_async", "sqlalchemy"]
# For tests that cancel a waiting call: a thread cannot be cancelled, so asyncio flavors only.
ASYNC_ONLY = pytest.mark.parametrize("flavor", ["psycopg_async", "sqlalchemy"], indirect=True)


@pytest.fixture
def dsn() -> str:
    return DSN


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A lock name no other test (or earlier run) uses."""
    return f"pytest-{request.node.name}-{uuid.uuid4().hex[:8]}"


class Observer:
    """A plain autocommit psycopg connection that looks at the server from outside."""

    def __init__(self, conn: psycopg.Connection[Any]):
        self.conn = conn

    def scalar(self, sql: str, *params: Any) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def holders(self, name: str) -> list[int]:
        return sorted(self.scalar("SELECT named_lock_holders(%s)", name))

    def waiters(self, name: str) -> list[int]:
        rows = self.conn.execute(
            "SELECT pid FROM advisory_locks_v WHERE lock_key = named_lock_key(%s) AND NOT granted ORDER BY pid",
            (name,),
        ).fetchall()
        return [r[0] for r in rows]

    def advisory_locks_of(self, pid: int) -> int:
        return self.scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s", pid)

    def alive(self, pid: int) -> bool:
        return bool(self.scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", pid))

    def check(self, name: str, token: int | None) -> bool:
        return bool(self.scalar("SELECT named_lock_check(%s, %s)", name, token))

    def state(self, pid: int) -> str | None:
        return self.scalar("SELECT state FROM pg_stat_activity WHERE pid = %s", pid)

    def until(self, what: str, predicate: Callable[[], Any], timeout: float = PROMPTLY) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"not within {timeout} s: {what} (last: {value!r})")
            time.sleep(0.02)

    async def auntil(self, what: str, predicate: Callable[[], Any], timeout: float = PROMPTLY) -> Any:
        """`until` for async tests: sleeps without blocking the event loop."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"not within {timeout} s: {what} (last: {value!r})")
            await asyncio.sleep(0.02)


@pytest.fixture
def observer() -> Any:
    conn = psycopg.connect(DSN, autocommit=True)
    conn.execute("SET statement_timeout = '30s'")
    yield Observer(conn)
    conn.close()


class Lock:
    """One lock object of any flavor, driven with async calls."""

    def __init__(self, lock: Any, sync: bool):
        self.lock = lock
        self.sync = sync

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.sync:
            return await asyncio.to_thread(fn, *args, **kwargs)
        return await fn(*args, **kwargs)

    async def acquire(self, blocking: bool = True, timeout: Any = None) -> bool:
        return bool(await self._call(self.lock.acquire, blocking=blocking, timeout=timeout))

    async def release(self) -> bool:
        return bool(await self._call(self.lock.release))

    async def renew(self) -> bool:
        return bool(await self._call(self.lock.renew))

    @property
    def is_acquired(self) -> bool:
        return bool(self.lock.is_acquired)

    @property
    def token(self) -> int | None:
        return self.lock.token  # type: ignore[no-any-return]

    @property
    def lost(self) -> Any:
        return self.lock.lost

    @property
    def connection(self) -> Any:
        return self.lock.connection

    async def pid(self) -> int:
        return await backend_pid(self.lock.connection)

    async def execute(self, sql: str) -> Any:
        """Run `sql` on the lock's own connection, behind the lock object's back."""
        return await run_sql(self.lock.connection, sql)


async def backend_pid(conn: Any) -> int:
    if isinstance(conn, (psycopg.Connection, psycopg.AsyncConnection)):
        return conn.info.backend_pid
    assert isinstance(conn, AsyncConnection)
    raw = await conn.get_raw_connection()
    return raw.driver_connection.get_server_pid()  # type: ignore[no-any-return, union-attr]


async def run_sql(conn: Any, sql: str, **params: Any) -> Any:
    """One statement on any flavor's connection, committed unless a transaction is open."""
    if isinstance(conn, psycopg.Connection):

        def sync() -> Any:
            began = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            row = conn.execute(sql.replace(":n", "%(n)s"), params).fetchone()
            if began:
                conn.commit()
            return row[0] if row else None

        return await asyncio.to_thread(sync)
    if isinstance(conn, psycopg.AsyncConnection):
        began = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        row = await (await conn.execute(sql.replace(":n", "%(n)s"), params)).fetchone()
        if began:
            await conn.commit()
        return row[0] if row else None
    began = not conn.in_transaction()
    value = (await conn.execute(text(sql), params)).scalar()
    if began:
        await conn.commit()
    return value


class CountingPool:
    """A psycopg_pool pool that counts its checked-out connections (what SQLAlchemy's
    pool.checkedout() tells)."""

    def __init__(self, pool: ConnectionPool[Any]):
        self.real = pool
        self.out = 0

    def getconn(self, timeout: float | None = None) -> psycopg.Connection[Any]:
        conn = self.real.getconn(timeout)
        self.out += 1
        return conn

    def putconn(self, conn: psycopg.Connection[Any]) -> None:
        self.out -= 1
        self.real.putconn(conn)


class AsyncCountingPool:
    def __init__(self, pool: AsyncConnectionPool[Any]):
        self.real = pool
        self.out = 0

    async def getconn(self, timeout: float | None = None) -> psycopg.AsyncConnection[Any]:
        conn = await self.real.getconn(timeout)
        self.out += 1
        return conn

    async def putconn(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.out -= 1
        await self.real.putconn(conn)


async def execute(conn: Any, sql: str) -> None:
    """One statement on any flavor's connection, in its transaction (not committed: a
    connection not in autocommit opens one)."""
    if isinstance(conn, psycopg.Connection):
        await asyncio.to_thread(conn.execute, sql)
    elif isinstance(conn, psycopg.AsyncConnection):
        await conn.execute(sql)
    else:
        await conn.execute(text(sql))


# Each flavor's (session lock, transaction lock) classes.
LOCK_CLASSES: dict[str, tuple[Any, Any]] = {
    "psycopg": (pnl_psycopg.SessionLock, pnl_psycopg.XactLock),
    "psycopg_async": (pnl_psycopg.AsyncSessionLock, pnl_psycopg.AsyncXactLock),
    "sqlalchemy": (pnl_sqlalchemy.SessionLock, pnl_sqlalchemy.XactLock),
}


@asynccontextmanager
async def in_thread(cm: Any) -> AsyncIterator[Any]:
    """`with cm:` for the synchronous flavor: entered and exited in a worker thread, as
    its other calls are made, with the body's exception (if any) passed to __exit__."""
    value = await asyncio.to_thread(cm.__enter__)
    try:
        yield value
    except BaseException as e:
        if not await asyncio.to_thread(cm.__exit__, type(e), e, e.__traceback__):
            raise
    else:
        await asyncio.to_thread(cm.__exit__, None, None, None)


class Flavor:
    """Pools, connections and lock objects of one client flavor."""

    def __init__(self, kind: str):
        self.kind = kind
        self.sync = kind == "psycopg"
        self.module: Any = pnl_sqlalchemy if kind == "sqlalchemy" else pnl_psycopg

    @asynccontextmanager
    async def pool(self, size: int = 10) -> AsyncIterator[Any]:
        """A pool (psycopg_pool) or an engine (SQLAlchemy) of at most `size` connections."""
        if self.kind == "psycopg":
            pool = await asyncio.to_thread(ConnectionPool, DSN, min_size=1, max_size=size, open=True)
            try:
                yield CountingPool(pool)
            finally:
                await asyncio.to_thread(pool.close)
        elif self.kind == "psycopg_async":
            apool = AsyncConnectionPool(DSN, min_size=1, max_size=size, open=False)
            await apool.open(wait=True)
            try:
                yield AsyncCountingPool(apool)
            finally:
                await apool.close()
        else:
            engine = create_async_engine(pnl_sqlalchemy.async_url(DSN), pool_size=size, max_overflow=0)
            try:
                yield engine
            finally:
                await engine.dispose()

    @asynccontextmanager
    async def connection(self, pool: Any) -> AsyncIterator[Any]:
        """A connection checked out of `pool` for the test's own use."""
        if self.kind == "psycopg":
            cm = pool.real.connection()
            conn = await asyncio.to_thread(cm.__enter__)
            try:
                yield conn
            finally:
                await asyncio.to_thread(cm.__exit__, None, None, None)
        elif self.kind == "psycopg_async":
            async with pool.real.connection() as aconn:
                yield aconn
        else:
            async with pool.connect() as sconn:
                yield sconn

    @asynccontextmanager
    async def own_connection(self) -> AsyncIterator[Any]:
        """A connection outside any pool (for locks given a connection)."""
        if self.kind == "psycopg":
            conn = await asyncio.to_thread(psycopg.connect, DSN)
            try:
                yield conn
            finally:
                await asyncio.to_thread(conn.close)
        elif self.kind == "psycopg_async":
            aconn = await psycopg.AsyncConnection.connect(DSN)
            try:
                yield aconn
            finally:
                await aconn.close()
        else:
            engine = create_async_engine(pnl_sqlalchemy.async_url(DSN), pool_size=1)
            try:
                async with engine.connect() as sconn:
                    yield sconn
            finally:
                await engine.dispose()

    def session_lock(self, bind: Any, name: Any, **kwargs: Any) -> Lock:
        session_cls, _ = LOCK_CLASSES[self.kind]
        return Lock(session_cls(bind, name, **kwargs), self.sync)

    def xact_lock(self, conn: Any, name: Any, **kwargs: Any) -> Lock:
        _, xact_cls = LOCK_CLASSES[self.kind]
        return Lock(xact_cls(conn, name, **kwargs), self.sync)

    async def commit(self, conn: Any) -> None:
        if self.sync:
            await asyncio.to_thread(conn.commit)
        else:
            await conn.commit()

    async def rollback(self, conn: Any) -> None:
        if self.sync:
            await asyncio.to_thread(conn.rollback)
        else:
            await conn.rollback()

    def checked_out(self, pool: Any) -> int:
        """Connections of `pool` in use right now."""
        if self.kind == "sqlalchemy":
            return pool.pool.checkedout()  # type: ignore[no-any-return]
        return pool.out  # type: ignore[no-any-return]

    @asynccontextmanager
    async def advisory_lock(self, bind: Any, name: Any, **kwargs: Any) -> AsyncIterator[bool]:
        if self.kind == "psycopg":
            async with in_thread(pnl_psycopg.advisory_lock(bind, name, **kwargs)) as acquired:
                yield acquired
        else:
            fn = pnl_psycopg.async_advisory_lock if self.kind == "psycopg_async" else pnl_sqlalchemy.advisory_lock
            async with fn(bind, name, **kwargs) as acquired:
                yield acquired

    @asynccontextmanager
    async def locked(self, lock: Lock) -> AsyncIterator[Any]:
        """`with lock:` / `async with lock:`, whichever the flavor has."""
        if self.sync:
            async with in_thread(lock.lock) as obj:
                yield obj
        else:
            async with lock.lock as obj:
                yield obj


@pytest.fixture(params=FLAVORS)
def flavor(request: pytest.FixtureRequest) -> Flavor:
    return Flavor(request.param)


@pytest_asyncio.fixture
async def pool(flavor: Flavor) -> AsyncIterator[Any]:
    async with flavor.pool(10) as p:
        yield p


@pytest_asyncio.fixture
async def pool2(flavor: Flavor) -> AsyncIterator[Any]:
    """A second application: its own pool, like another process."""
    async with flavor.pool(5) as p:
        yield p
