"""The two runnable examples, driven through their functions against the real server."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import async_sessionmaker

import singleton_job
import transfer
from conftest import DSN, PROMPTLY
from pg_named_locks.sqlalchemy import SessionLock

pytestmark = pytest.mark.asyncio


async def test_singleton_job_runs_once(name, capsys):
    ran, skipped = await singleton_job.demo(DSN, workers=5, job_seconds=0, name=name)
    assert (ran, skipped) == (1, 4)
    out = capsys.readouterr().out
    assert out.count(f": running {name}") == 1
    assert out.count("already running") == 4


async def test_singleton_job_with_a_lease(observer, name, capsys):
    """--lease: the job keeps its leased lock past the lease's length (renewed in the
    background), and releases it at the end."""
    ran, skipped = await singleton_job.demo(DSN, workers=2, job_seconds=2.5, name=name, lease=1)
    assert (ran, skipped) == (1, 1)
    assert await observer.holders(name) == []
    assert capsys.readouterr().out.count(f"{name} finished") == 1


async def test_singleton_job_skips_while_another_process_runs_it(engine, name, capsys):
    async with SessionLock(engine, name):  # "another process" holds the job
        ran, skipped = await singleton_job.demo(DSN, workers=3, job_seconds=0, name=name)
    assert (ran, skipped) == (0, 3)
    ran, skipped = await singleton_job.demo(DSN, workers=1, job_seconds=0, name=name)
    assert (ran, skipped) == (1, 0), "released: the next run gets it"


@pytest_asyncio.fixture
async def table():
    t = f"pytest_accounts_{uuid.uuid4().hex[:8]}"
    yield t
    conn = await asyncpg.connect(DSN, timeout=PROMPTLY)
    await conn.execute(f"DROP TABLE IF EXISTS {t}")
    await conn.close()


async def test_concurrent_transfers_conserve_the_total(table):
    r = await transfer.run(DSN, table=table, accounts=6, workers=6, transfers=300, seed=7)
    assert r["before"] == r["after"] == Decimal("6000.00")
    assert r["negative"] == 0
    assert r["moved"] + r["refused"] == 300 and r["moved"] > 0
    # a second run on the existing table keeps the balances it finds
    r2 = await transfer.run(DSN, table=table, accounts=6, workers=3, transfers=30, seed=8)
    assert r2["before"] == r2["after"] == Decimal("6000.00")


async def test_transfer_waits_for_a_locked_account(engine, observer, table):
    """A transfer touching an account whose lock is held elsewhere waits for it: the
    lock name is what serialises the read-modify-write."""
    await transfer.create_accounts(engine, table, 2, Decimal("100.00"))
    sessions = async_sessionmaker(engine)
    blocker = SessionLock(engine, transfer.account_lock(table, 2))
    await blocker.acquire()
    task = asyncio.create_task(transfer.transfer(sessions, table, 1, 2, Decimal("30.00")))
    await observer.until("the transfer waits", lambda: observer.waiters(transfer.account_lock(table, 2)))
    assert await observer.conn.fetchval(f"SELECT balance FROM {table} WHERE id = 1") == Decimal("100.00")
    await blocker.release()
    assert await asyncio.wait_for(task, PROMPTLY) is True
    rows = await observer.conn.fetch(f"SELECT id, balance FROM {table} ORDER BY id")
    assert [tuple(r) for r in rows] == [(1, Decimal("70.00")), (2, Decimal("130.00"))]
    assert await transfer.transfer(sessions, table, 1, 2, Decimal("70.01")) is False, "insufficient funds"


async def test_concurrent_setup_creates_the_table_once(engine, table):
    await asyncio.gather(*(transfer.create_accounts(engine, table, 4, Decimal("10")) for _ in range(4)))
    assert await transfer.total(engine, table) == Decimal("40.00")


async def test_table_names_are_checked(engine):
    with pytest.raises(ValueError):
        await transfer.create_accounts(engine, "accounts; DROP TABLE x", 1, Decimal(1))
