"""Fixtures of the robustness suite: connections to the server that
scripts/robustness-tests.sh started (one cluster with a UTF8, a LATIN1, an EUC_JP and a
SQL_ASCII database), and what the tests need to start servers of their own."""

import hashlib
import os

import psycopg
import pytest


def env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run the suite with scripts/robustness-tests.sh VERSION", pytrace=False)
    return value


def key64(name: str) -> int:
    """named_lock_key: the md5 of the name's UTF-8 form, in every database."""
    return int.from_bytes(hashlib.md5(name.encode()).digest()[:8], "big", signed=True)


def sqlstate(exc):
    return getattr(getattr(exc, "diag", None), "sqlstate", None)


class Conns:
    def __init__(self):
        self.conns = []

    def open(self, dbname, **kw):
        conn = psycopg.connect(
            host=env("ROBUST_HOST"), port=env("ROBUST_PORT"), user="postgres", dbname=dbname,
            autocommit=True, connect_timeout=10, client_encoding="UTF8",
            options="-c statement_timeout=60s -c lock_timeout=30s", **kw,
        )
        self.conns.append(conn)
        return conn

    def close(self):
        for c in self.conns:
            try:
                c.close()
            except Exception:  # noqa: BLE001 - a test may have broken it on purpose
                pass


@pytest.fixture
def conns():
    c = Conns()
    yield c
    c.close()


@pytest.fixture
def db(conns):
    """db('latin1') opens a session on robust_latin1 (client encoding UTF8)."""
    return lambda enc: conns.open(f"robust_{enc}")
