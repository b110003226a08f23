"""Fixtures for the examples' tests: a real server (PGNL_DSN, as scripts/client-tests.sh
sets it), engines, an observer connection, and unique lock names per test so that runs
and tests never see each other's locks or statistics. The lock classes come from the
installed package pg-named-locks (clients/python); its own tests are in
clients/python/tests."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import create_async_engine

from pg_named_locks.sqlalchemy import async_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the examples

DSN = os.environ.get("PGNL_DSN", "postgresql://postgres@127.0.0.1:23018/named_locks_clients")
# Generous: "promptly" on a loaded 2-core CI machine.
PROMPTLY = 10.0


@pytest.fixture
def dsn() -> str:
    return DSN


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A lock name no other test (or earlier run) uses."""
    return f"pytest-{request.node.name}-{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture
async def engine():
    eng = create_async_engine(async_url(DSN), pool_size=10, max_overflow=10)
    yield eng
    await eng.dispose()


@pytest_asyncio.fixture
async def engine2():
    """A second application: its own pool, like another process."""
    eng = create_async_engine(async_url(DSN), pool_size=5)
    yield eng
    await eng.dispose()


class Observer:
    """A plain asyncpg connection that looks at the server from outside."""

    def __init__(self, conn: asyncpg.Connection):
        self.conn = conn

    async def holders(self, name: str) -> list[int]:
        return list(await self.conn.fetchval("SELECT named_lock_holders($1)", name))

    async def waiters(self, name: str) -> list[int]:
        rows = await self.conn.fetch(
            "SELECT pid FROM advisory_locks_v WHERE lock_key = named_lock_key($1) AND NOT granted ORDER BY pid",
            name,
        )
        return [r["pid"] for r in rows]

    async def until(self, what: str, predicate, timeout: float = PROMPTLY):
        """Poll `predicate()` (async) until it returns a true value; fail after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            value = await predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"not within {timeout} s: {what} (last: {value!r})")
            await asyncio.sleep(0.02)


@pytest_asyncio.fixture
async def observer():
    conn = await asyncpg.connect(DSN, timeout=PROMPTLY)
    await conn.execute("SET statement_timeout = '30s'")
    yield Observer(conn)
    await conn.close()
