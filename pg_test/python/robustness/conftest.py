"""Fixtures of the robustness suite: connections to the server that
scripts/robustness-tests.sh started (one cluster with a UTF8, a LATIN1, an EUC_JP and a
SQL_ASCII database), and what the tests need to start servers of their own."""

import psycopg
import pytest

import pgtest_util

env = pgtest_util.env_reader("scripts/robustness-tests.sh VERSION")


class Conns(pgtest_util.Connections):
    def open(self, dbname, **kw):
        return self.keep(psycopg.connect(
            host=env("ROBUST_HOST"), port=env("ROBUST_PORT"), user="postgres", dbname=dbname,
            autocommit=True, connect_timeout=10, client_encoding="UTF8",
            options="-c statement_timeout=60s -c lock_timeout=30s", **kw,
        ))


@pytest.fixture
def conns():
    c = Conns()
    yield c
    c.close()


@pytest.fixture
def db(conns):
    """db('latin1') opens a session on robust_latin1 (client encoding UTF8)."""
    return lambda enc: conns.open(f"robust_{enc}")
