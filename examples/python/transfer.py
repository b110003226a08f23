#!/usr/bin/env python3
"""Funds transfers between accounts, correct under concurrency.

Each transfer runs in one transaction and first locks *both* accounts with a single
``xact_lock_many`` call (``XactLock(session, [name_a, name_b])``). The server takes the
locks in one global order, so two transfers between the same accounts in opposite
directions cannot deadlock, however the caller orders the names; and the locks are
released by COMMIT or ROLLBACK, so there is nothing to forget.

Inside the lock the transfer reads both balances, checks for sufficient funds and writes
the new balances back (a read-modify-write that would lose updates without the lock), and
it updates the two rows in random order -- the lock, not the row order, keeps it free of
deadlocks. Concurrent workers run random transfers; at the end the total is the same.

    python transfer.py --dsn postgresql://postgres@127.0.0.1:5432/postgres --workers 4

Creates the table (default ``named_locks_demo_accounts``) and its accounts if missing.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sys
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from pg_named_locks.sqlalchemy import XactLock, async_url

DEFAULT_TABLE = "named_locks_demo_accounts"


def _table(name: str) -> str:
    # The table name goes into SQL text: accept plain identifiers only.
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"not a plain table name: {name!r}")
    return name


def account_lock(table: str, account: int) -> str:
    """The lock name of one account, e.g. 'named_locks_demo_accounts:17'."""
    return f"{table}:{account}"


async def create_accounts(engine: AsyncEngine, table: str, accounts: int, initial: Decimal) -> None:
    """Create the table and accounts 1..`accounts` if missing (existing balances are kept)."""
    table = _table(table)
    async with engine.begin() as conn:
        # Two processes creating the table at once would collide in the catalog: this
        # transaction lock makes the second wait and then find the table there.
        await XactLock(conn, f"{table}:setup").acquire()
        await conn.execute(text(
            f"CREATE TABLE IF NOT EXISTS {table} ("
            " id integer PRIMARY KEY,"
            " balance numeric(14,2) NOT NULL CHECK (balance >= 0))"
        ))
        await conn.execute(
            text(f"INSERT INTO {table} SELECT g, :initial FROM generate_series(1, :n) g ON CONFLICT (id) DO NOTHING"),
            {"initial": initial, "n": accounts},
        )


async def transfer(sessions: async_sessionmaker, table: str, source: int, target: int, amount: Decimal) -> bool:
    """Move `amount` from `source` to `target` in one transaction. False (and nothing
    changed) when the source account has too little money."""
    if source == target:
        raise ValueError("source and target must differ")
    table = _table(table)
    async with sessions() as session, session.begin():
        await XactLock(session, [account_lock(table, source), account_lock(table, target)]).acquire()
        rows = await session.execute(
            text(f"SELECT id, balance FROM {table} WHERE id IN (:a, :b)"), {"a": source, "b": target}
        )
        balance = dict(rows.all())
        if len(balance) != 2:
            raise LookupError(f"no such account: {source} or {target}")
        if balance[source] < amount:
            return False
        updates = [(source, balance[source] - amount), (target, balance[target] + amount)]
        random.shuffle(updates)
        for account, new_balance in updates:
            await session.execute(
                text(f"UPDATE {table} SET balance = :balance WHERE id = :id"), {"balance": new_balance, "id": account}
            )
        return True


async def total(engine: AsyncEngine, table: str) -> Decimal:
    async with engine.connect() as conn:
        return (await conn.execute(text(f"SELECT coalesce(sum(balance), 0) FROM {_table(table)}"))).scalar()


async def run(
    dsn: str,
    table: str = DEFAULT_TABLE,
    accounts: int = 8,
    workers: int = 4,
    transfers: int = 200,
    initial: Decimal = Decimal("1000.00"),
    seed: int | None = None,
) -> dict[str, object]:
    """Run `transfers` random transfers spread over `workers` concurrent workers.
    Returns totals before and after and how many transfers moved money."""
    rng = random.Random(seed)
    engine = create_async_engine(
        async_url(dsn),
        pool_size=workers,
        # A deadlock or a lost lock must fail the run, not hang it.
        connect_args={"server_settings": {"application_name": "transfer-demo", "lock_timeout": "30s"}},
    )
    try:
        await create_accounts(engine, table, accounts, initial)
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        before = await total(engine, table)
        plan = []
        for _ in range(transfers):
            source, target = rng.sample(range(1, accounts + 1), 2)
            plan.append((source, target, Decimal(rng.randint(1, 40000)) / 100))

        async def worker(mine: list[tuple[int, int, Decimal]]) -> int:
            return sum([await transfer(sessions, table, s, t, a) for s, t, a in mine])

        done = await asyncio.gather(*(worker(plan[i::workers]) for i in range(workers)))
        after = await total(engine, table)
        async with engine.connect() as conn:
            negative = (await conn.execute(text(f"SELECT count(*) FROM {table} WHERE balance < 0"))).scalar()
    finally:
        await engine.dispose()
    return {
        "before": before, "after": after, "moved": sum(done), "refused": transfers - sum(done), "negative": negative
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True, help="postgresql://user@host:port/db (pg_named_locks installed)")
    parser.add_argument("--table", default=DEFAULT_TABLE)
    parser.add_argument("--accounts", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--transfers", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    r = asyncio.run(run(args.dsn, args.table, args.accounts, args.workers, args.transfers, seed=args.seed))
    print(f"{r['moved']} transfers done, {r['refused']} refused for insufficient funds")
    if r["before"] == r["after"] and r["negative"] == 0:
        print(f"total before {r['before']}, after {r['after']}: total conserved")
        return 0
    print(f"total before {r['before']}, after {r['after']}, {r['negative']} negative balances: NOT conserved")
    return 1


if __name__ == "__main__":
    sys.exit(main())
