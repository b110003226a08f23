"""A client that still computes keys itself (md5 → bigint, pg_advisory_lock) and the
extension's named locks are the same locks, in both directions."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from conftest import PROMPTLY
from named_locks import SessionLock, XactLock

pytestmark = pytest.mark.asyncio


def legacy_key(name: str) -> int:
    """What the pre-extension clients computed (deliberately not named_locks.lock_key)."""
    return int.from_bytes(hashlib.md5(name.encode()).digest()[:8], "big", signed=True)


def legacy_key32(name: str) -> int:
    return int.from_bytes(hashlib.md5(name.encode()).digest()[:4], "big", signed=True)


async def scalar(conn: AsyncConnection, sql: str, **params):
    return (await conn.execute(text(sql), params)).scalar()


async def test_legacy_lock_excludes_named_lock_and_back(engine, engine2, observer, name):
    key = legacy_key(name)
    async with engine.connect() as legacy:
        assert await scalar(legacy, "SELECT pg_try_advisory_lock(:k)", k=key) is True
        await legacy.commit()
        named = SessionLock(engine2, name)
        assert await named.acquire(blocking=False) is False
        assert await named.acquire(timeout=0.1) is False
        assert await scalar(legacy, "SELECT pg_advisory_unlock(:k)", k=key) is True
        await legacy.commit()

        assert await named.acquire(blocking=False) is True
        assert await scalar(legacy, "SELECT pg_try_advisory_lock(:k)", k=key) is False
        await legacy.commit()
        assert await named.release()
        assert await scalar(legacy, "SELECT pg_try_advisory_lock(:k)", k=key) is True
        assert await scalar(legacy, "SELECT pg_advisory_unlock(:k)", k=key) is True
        await legacy.commit()


async def test_waits_cross_between_legacy_and_named(engine, engine2, observer, name):
    key = legacy_key(name)
    async with engine.connect() as legacy:
        pid = (await legacy.get_raw_connection()).driver_connection.get_server_pid()
        await legacy.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
        await legacy.commit()
        named = SessionLock(engine2, name)
        waiting = asyncio.create_task(named.acquire())
        (waiter,) = await observer.until("named waits for legacy", lambda: observer.waiters(name))
        assert await observer.conn.fetchval(
            "SELECT blocked_by FROM advisory_locks_v WHERE pid = $1 AND NOT granted", waiter
        ) == [pid]
        await legacy.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        await legacy.commit()
        assert await asyncio.wait_for(waiting, PROMPTLY) is True

        legacy_wait = asyncio.create_task(legacy.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key}))
        assert await observer.until("legacy waits for named", lambda: observer.waiters(name)) == [pid]
        await named.release()
        await asyncio.wait_for(legacy_wait, PROMPTLY)
        assert await observer.holders(name) == [pid]
        await legacy.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        await legacy.commit()


async def test_legacy_transaction_lock_excludes_xact_lock(engine, engine2, name):
    async with engine.connect() as legacy, engine2.connect() as conn:
        await legacy.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": legacy_key(name)})
        assert not await XactLock(conn, name).acquire(blocking=False)
        await legacy.commit()
        assert await XactLock(conn, name).acquire(blocking=False)
        await conn.commit()


async def test_registered_name_labels_a_legacy_lock(engine, observer, name):
    key = legacy_key(name)
    async with engine.connect() as legacy:
        pid = (await legacy.get_raw_connection()).driver_connection.get_server_pid()
        await legacy.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
        await legacy.commit()
        row = await observer.conn.fetchrow(
            "SELECT lock_name, key_kind, mode, granted FROM advisory_locks_v WHERE pid = $1 AND lock_key = $2", pid, key
        )
        assert tuple(row) == (None, "bigint", "exclusive", True), "never seen name: shown by key only"

        assert await observer.conn.fetchval("SELECT register_lock_name($1)", name) == key
        row = await observer.conn.fetchrow(
            "SELECT lock_name, held_since FROM advisory_locks_v WHERE pid = $1 AND lock_key = $2", pid, key
        )
        assert row["lock_name"] == name
        assert row["held_since"] is None, "the extension did not grant it, so it has no holder time"
        assert await observer.conn.fetchval("SELECT named_lock_name($1::bigint)", key) == name
        assert await observer.holders(name) == [pid]
        await legacy.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        await legacy.commit()


async def test_legacy_two_key_locks_are_the_pair_space(engine, engine2, observer, name):
    ns = f"{name}-ns"
    async with engine.connect() as legacy, engine2.connect() as conn:
        await legacy.execute(
            text("SELECT pg_advisory_lock(:a, :b), pg_advisory_lock(:a, 42)"),
            {"a": legacy_key32(ns), "b": legacy_key32("item")},
        )
        await legacy.commit()
        assert await scalar(conn, "SELECT try_lock_pair(:ns, 'item')", ns=ns) is False
        assert await scalar(conn, "SELECT try_lock_pair(:ns, 42)", ns=ns) is False
        assert await scalar(conn, "SELECT try_lock_pair(:ns, 43)", ns=ns) is True
        assert await scalar(conn, "SELECT unlock_pair(:ns, 43)", ns=ns) is True
        await conn.commit()
        await legacy.execute(text("SELECT pg_advisory_unlock_all()"))
        await legacy.commit()
        assert await scalar(conn, "SELECT try_lock_pair(:ns, 'item') AND try_lock_pair(:ns, 42)", ns=ns) is True
        assert await scalar(
            conn, "SELECT unlock_pair(:ns, 'item') AND unlock_pair(:ns, 42)", ns=ns
        ) is True
        await conn.commit()
