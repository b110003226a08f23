"""queries.yaml (postgres_exporter) and who_blocks_whom.sql against a real server with
real holders and waiters: every query runs, returns exactly the declared columns with the
types the exporter needs, no duplicate label sets, and the right numbers.

Needs PGNL_DSN (libpq URL of a database with pg_named_locks; scripts/client-tests.sh
sets it) and, for who_blocks_whom.sql, psql (PGNL_PSQL or on PATH)."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import shutil
import time
import uuid
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
import yaml

HERE = Path(__file__).resolve().parent
DSN = os.environ.get("PGNL_DSN", "postgresql://postgres@127.0.0.1:23018/named_locks_clients")
PROMPTLY = 10.0
USAGES = {"LABEL", "GAUGE", "COUNTER"}



def load_queries() -> dict:
    return yaml.safe_load((HERE / "queries.yaml").read_text())


def declared(spec: dict) -> list[tuple[str, str, str]]:
    """(column, usage, description) in declaration order."""
    out = []
    for item in spec["metrics"]:
        assert isinstance(item, dict) and len(item) == 1, item
        ((column, meta),) = item.items()
        out.append((column, meta["usage"], meta["description"]))
    return out


def test_queries_yaml_is_well_formed():
    queries = load_queries()
    assert set(queries) == {
        "pg_named_locks_waiting",
        "pg_named_locks_held",
        "pg_named_locks_stats",
        "pg_named_locks_registry",
    }
    for ns, spec in queries.items():
        assert isinstance(spec["query"], str) and spec["query"].strip()
        assert spec.get("master") is True, f"{ns}: cluster-wide data, run once"
        cols = declared(spec)
        assert len({c for c, _, _ in cols}) == len(cols), f"{ns}: duplicate column"
        for column, usage, description in cols:
            assert usage in USAGES, (ns, column, usage)
            assert description.strip(), (ns, column)
            if usage == "COUNTER":
                assert column.endswith("_total"), f"{ns}.{column}: Prometheus counters end in _total"
        assert any(u != "LABEL" for _, u, _ in cols), f"{ns}: no metric"


async def connect(app: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(
        DSN, timeout=PROMPTLY, server_settings={"application_name": app, "statement_timeout": "60s"}
    )
    return conn


async def until(what: str, predicate, timeout: float = PROMPTLY):
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what} (last: {value!r})")
        await asyncio.sleep(0.02)


async def run_exporter_queries(conn: asyncpg.Connection) -> dict[str, list[dict]]:
    """Run every query as the exporter would and check its shape; rows as dicts."""
    results = {}
    for ns, spec in load_queries().items():
        cols = declared(spec)
        stmt = await conn.prepare(spec["query"])
        names = [a.name for a in stmt.get_attributes()]
        assert names == [c for c, _, _ in cols], f"{ns}: columns {names} do not match the declared metrics"
        rows = [dict(r) for r in await stmt.fetch()]
        labels_seen = set()
        for r in rows:
            labels = tuple(r[c] for c, u, _ in cols if u == "LABEL")
            assert all(isinstance(v, str) for v in labels), f"{ns}: label not text: {labels}"
            assert labels not in labels_seen, f"{ns}: duplicate label set {labels} (the exporter rejects it)"
            labels_seen.add(labels)
            for c, u, _ in cols:
                if u != "LABEL":
                    assert isinstance(r[c], (int, float, Decimal)) and not isinstance(r[c], bool), (ns, c, r[c])
                    assert r[c] >= 0, (ns, c, r[c])
        results[ns] = rows
    return results


def only(rows: list[dict], **match) -> dict:
    found = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(found) == 1, f"{match}: {found}"
    return found[0]


@pytest_asyncio.fixture
async def scene():
    """Name W: one exclusive holder and two waiters, plus a failed try and a timeout.
    Name S: two shared holders. Yields the connections and names; closes them all."""
    tag = uuid.uuid4().hex[:8]
    w, s = f"mon-wait-{tag}", f"mon-shared-{tag}"
    conns = {
        app: await connect(app)
        for app in (
            "mon-holder", "mon-waiter-1", "mon-waiter-2", "mon-shared-1", "mon-shared-2", "mon-trier", "mon-observer"
        )
    }
    obs = conns["mon-observer"]
    tasks = []
    try:
        await conns["mon-holder"].execute("SELECT lock_named($1)", w)
        assert await conns["mon-trier"].fetchval("SELECT try_lock_named($1)", w) is False
        assert await conns["mon-trier"].fetchval("SELECT lock_named($1, '20ms')", w) is False
        for app in ("mon-shared-1", "mon-shared-2"):
            await conns[app].execute("SELECT lock_named_shared($1)", s)

        async def waiting(n: int) -> bool:
            # waiting_since (pg_locks.waitstart) can lag the queue entry for a moment
            return await obs.fetchval(
                "SELECT count(*) FROM advisory_locks_v"
                " WHERE lock_name = $1 AND NOT granted AND waiting_since IS NOT NULL",
                w,
            ) == n

        # one after the other, so that the queue order (and so who blocks whom) is known
        for i, app in enumerate(("mon-waiter-1", "mon-waiter-2"), 1):
            tasks.append(asyncio.create_task(conns[app].execute("SELECT lock_named($1)", w)))
            await until(f"{app} waits", lambda i=i: waiting(i))  # this iteration's i (B023)
        pids = {app: c.get_server_pid() for app, c in conns.items()}
        yield {"w": w, "s": s, "conns": conns, "pids": pids, "tasks": tasks, "obs": obs}
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for c in conns.values():
            c.terminate()


@pytest.mark.asyncio
async def test_exporter_queries_while_locks_are_held_and_awaited(scene):
    w, s, pids = scene["w"], scene["s"], scene["pids"]
    obs = scene["obs"]
    db = await obs.fetchval("SELECT current_database()")
    r = await run_exporter_queries(obs)

    waiting = only(r["pg_named_locks_waiting"], database=db, lock_name=w)
    assert waiting["sessions"] == 2
    assert 0 < waiting["longest_seconds"] < 600
    assert not [x for x in r["pg_named_locks_waiting"] if x["lock_name"] == s]

    assert only(r["pg_named_locks_held"], database=db, lock_name=w, mode="exclusive")["sessions"] == 1
    shared = only(r["pg_named_locks_held"], database=db, lock_name=s, mode="shared")
    assert shared["sessions"] == 2
    assert 0 < shared["longest_seconds"] < 600
    assert not [x for x in r["pg_named_locks_held"] if x["lock_name"] == s and x["mode"] == "exclusive"]

    stats = only(r["pg_named_locks_stats"], lock_name=w)
    assert stats["key_kind"] == "bigint"
    assert (stats["acquisitions_total"], stats["immediate_acquisitions_total"], stats["waits_total"]) == (1, 1, 0)
    assert (stats["try_failures_total"], stats["timeouts_total"]) == (1, 1)
    assert stats["wait_seconds_total"] == 0 and stats["max_wait_seconds"] == 0
    assert abs(stats["last_acquired_timestamp_seconds"] - time.time()) < 600
    assert only(r["pg_named_locks_stats"], lock_name=s)["acquisitions_total"] == 2

    (registry,) = r["pg_named_locks_registry"]
    assert registry["storage"] == "shared_preload_libraries"
    assert 2 <= registry["names"] <= registry["capacity"]

    # the waits end: the first waiter gets the lock, then the second
    conns, tasks = scene["conns"], scene["tasks"]
    await conns["mon-holder"].execute("SELECT unlock_named($1)", w)
    await asyncio.wait_for(tasks[0], PROMPTLY)
    await conns["mon-waiter-1"].execute("SELECT unlock_named($1)", w)
    await asyncio.wait_for(tasks[1], PROMPTLY)
    r = await run_exporter_queries(obs)
    assert not [x for x in r["pg_named_locks_waiting"] if x["lock_name"] == w]
    held = only(r["pg_named_locks_held"], database=db, lock_name=w, mode="exclusive")
    assert held["sessions"] == 1
    stats = only(r["pg_named_locks_stats"], lock_name=w)
    assert (stats["acquisitions_total"], stats["immediate_acquisitions_total"], stats["waits_total"]) == (3, 1, 2)
    assert 0 < stats["max_wait_seconds"] <= stats["wait_seconds_total"] < 600
    assert pids["mon-waiter-2"] in await obs.fetchval("SELECT named_lock_holders($1)", w)


@pytest.mark.asyncio
async def test_unnamed_builtin_locks_are_summed_not_labelled_by_key(scene):
    obs = scene["obs"]
    holder = scene["conns"]["mon-trier"]
    key = int(uuid.uuid4().int % (1 << 62))  # a key nobody registered
    await holder.execute("SELECT pg_advisory_lock($1), pg_advisory_lock($1 + 1)", key)
    try:
        r = await run_exporter_queries(obs)
        labels = {x["lock_name"] for x in r["pg_named_locks_held"]}
        assert "(unnamed)" in labels
        assert not any(str(key) in lbl for lbl in labels)
        db = await obs.fetchval("SELECT current_database()")
        assert only(r["pg_named_locks_held"], database=db, lock_name="(unnamed)", mode="exclusive")["sessions"] >= 2
    finally:
        await holder.execute("SELECT pg_advisory_unlock_all()")


def psql_path() -> str | None:
    return os.environ.get("PGNL_PSQL") or shutil.which("psql")


@pytest.mark.asyncio
async def test_who_blocks_whom_in_psql(scene):
    psql = psql_path()
    if not psql:
        pytest.skip("no psql (set PGNL_PSQL)")
    w, pids = scene["w"], scene["pids"]
    proc = await asyncio.create_subprocess_exec(
        psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--csv", "-f", str(HERE / "who_blocks_whom.sql"), DSN,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    rows = list(csv.DictReader(io.StringIO(out.decode())))
    assert list(rows[0]) == [
        "waiter_pid", "lock_name", "wants", "waiting_for", "waiter_app", "blocker_pid", "blocker_has",
        "blocker_app", "blocker_state", "blocker_query_start", "blocker_in_state_for", "blocker_query",
    ]
    mine = [r for r in rows if r["lock_name"] == w]
    got = sorted((r["waiter_app"], r["blocker_app"], r["blocker_has"]) for r in mine)
    assert got == [
        ("mon-waiter-1", "mon-holder", "holds exclusive"),
        ("mon-waiter-2", "mon-holder", "holds exclusive"),
        ("mon-waiter-2", "mon-waiter-1", "queued ahead, wants exclusive"),
    ]
    first = only(mine, waiter_app="mon-waiter-1")
    assert int(first["waiter_pid"]) == pids["mon-waiter-1"]
    assert int(first["blocker_pid"]) == pids["mon-holder"]
    assert first["wants"] == "exclusive"
    assert first["blocker_state"] == "idle"
    assert first["blocker_query"].startswith("SELECT lock_named(")
    assert first["waiting_for"] and first["blocker_query_start"] and first["blocker_in_state_for"]
    # psql \watch needs a single statement it can rerun: no trailing meta-commands
    sql = (HERE / "who_blocks_whom.sql").read_text()
    body = "\n".join(line for line in sql.splitlines() if not line.startswith("--")).strip()
    assert body.count(";") == 1 and body.endswith(";") and "\\" not in body.replace("\\s", "")
