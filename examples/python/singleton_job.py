#!/usr/bin/env python3
"""Singleton job: several workers start the same scheduled job at once (think: one cron
entry on every application server); exactly one runs it, the others see that it is
already running and skip it.

The lock is a session lock on a dedicated pooled connection, taken without waiting:
``advisory_lock(engine, name, blocking=False)`` yields False when another worker has
it. If a worker dies, its connection closes and the server releases the lock by itself,
so a crash never leaves the job locked; with ``--lease`` a worker that hangs loses it
too (the server ends its session once the lease runs out unrenewed).

    python singleton_job.py --dsn postgresql://postgres@127.0.0.1:5432/postgres --workers 4

While it runs, ``SELECT * FROM advisory_locks_v`` shows the holder by name, with
``application_name`` = singleton-job-worker-N.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from pg_named_locks.sqlalchemy import advisory_lock, async_url

JOB_NAME = "daily-report-job"


async def run_job_once(
    engine: AsyncEngine,
    worker: str,
    job: Callable[[], Awaitable[None]],
    name: str = JOB_NAME,
    lease: float | None = None,
) -> bool:
    """Run `job` unless another worker is running it; True when this worker ran it.
    With `lease` (seconds) the lock is leased and renewed in the background while the
    job runs."""
    async with advisory_lock(engine, name, blocking=False, lease=lease) as acquired:
        if not acquired:
            print(f"{worker}: {name} already running elsewhere, skipping", flush=True)
            return False
        print(f"{worker}: running {name}", flush=True)
        await job()
        print(f"{worker}: {name} finished", flush=True)
        return True


async def demo(
    dsn: str, workers: int = 4, job_seconds: float = 1.0, name: str = JOB_NAME, lease: float | None = None
) -> tuple[int, int]:
    """Start `workers` workers at once, each an application with its own pool, as separate
    processes would be. Returns (ran, skipped)."""
    engines = [
        create_async_engine(
            async_url(dsn),
            pool_size=1,
            connect_args={"server_settings": {"application_name": f"singleton-job-worker-{i}"}},
        )
        for i in range(1, workers + 1)
    ]
    skipped = 0
    everyone_tried = asyncio.Event()

    async def job() -> None:
        await asyncio.sleep(job_seconds)  # the actual work would go here
        # Demo only: keep "working" until every other worker has made its attempt, so the
        # output does not depend on how the workers happen to be scheduled. (Bounded: a
        # second winner would mean the lock failed, and the summary then says so.)
        try:
            await asyncio.wait_for(everyone_tried.wait(), 20)
        except asyncio.TimeoutError:
            pass

    async def worker(i: int, engine: AsyncEngine) -> bool:
        nonlocal skipped
        ran = await run_job_once(engine, f"worker-{i}", job, name, lease)
        if not ran:
            skipped += 1
            if skipped == workers - 1:
                everyone_tried.set()
        return ran

    try:
        if workers == 1:
            everyone_tried.set()
        results = await asyncio.gather(*(worker(i, e) for i, e in enumerate(engines, 1)))
    finally:
        for e in engines:
            await e.dispose()
    return sum(results), len(results) - sum(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True, help="postgresql://user@host:port/db (pg_named_locks installed)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--job-seconds", type=float, default=1.0, help="how long the job works")
    parser.add_argument("--name", default=JOB_NAME, help="the job's lock name")
    parser.add_argument("--lease", type=float, default=None, help="lease the lock for this many seconds (>= 1)")
    args = parser.parse_args(argv)
    ran, skipped = asyncio.run(demo(args.dsn, args.workers, args.job_seconds, args.name, args.lease))
    print(f"{ran} worker ran the job, {skipped} skipped it")
    return 0 if ran == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
