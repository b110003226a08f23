"""Shared fixtures for the property tests: connections to the server that
scripts/property-tests.sh started, what the registry shows for a name, and a count of
the inputs tried (printed at the end, for the README's "bad inputs tried")."""

import collections
import os

import psycopg
import pytest
from hypothesis import HealthCheck, settings

# Reproducible in CI: the same examples on every run, no example database on disk.
settings.register_profile(
    "props",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture, HealthCheck.large_base_example],
)
settings.load_profile("props")

NAME_BYTES = 168  # src/registry/layout.rs: bytes of a name kept in the registry
HIDDEN = "<insufficient privilege>"

TRIED = collections.Counter()


def stored(label: str) -> str:
    """What the registry shows for a label: cut to NAME_BYTES at a character
    boundary, marked with a trailing '…' when cut."""
    b = label.encode()
    if len(b) <= NAME_BYTES:
        return label
    end = NAME_BYTES
    while end > 0 and (b[end] & 0xC0) == 0x80:  # a continuation byte: not a boundary
        end -= 1
    return b[:end].decode() + "…"


def pg_version() -> int:
    return int(os.environ.get("PROPS_PG_VERSION", "18"))


def connect(**kw):
    conn = psycopg.connect(
        host=os.environ.get("PROPS_HOST", "127.0.0.1"),
        port=int(os.environ.get("PROPS_PORT", "26018")),
        dbname=os.environ.get("PROPS_DB", "props"),
        user="postgres",
        autocommit=True,
        connect_timeout=10,
        # every call bounded: a hang is a failure, not a stuck CI run
        options="-c statement_timeout=30s -c lock_timeout=10s -c client_encoding=UTF8",
        **kw,
    )
    return conn


@pytest.fixture(scope="session")
def conn():
    c = connect()
    yield c
    c.close()


@pytest.fixture(scope="session")
def other():
    """A second session, to hold locks the first one must wait for."""
    c = connect()
    yield c
    c.close()


def my_locks(conn) -> int:
    return conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
    ).fetchone()[0]


def pytest_terminal_summary(terminalreporter):
    total = sum(TRIED.values())
    parts = ", ".join(f"{k} {v}" for k, v in sorted(TRIED.items()))
    terminalreporter.write_line(f"property tests: {total} generated and hostile inputs tried ({parts})")
