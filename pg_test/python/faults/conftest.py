"""Fixtures of the fault-injection suite. scripts/fault-tests.sh starts the servers and
passes their connection strings in FAULTS_* environment variables; a missing variable
fails the test (a fault test that silently skips would prove nothing)."""

import psycopg
import pytest

import helpers
import pgtest_util
from pgtest_util import connect_retry

env = pgtest_util.env_reader("scripts/fault-tests.sh VERSION")


class Sessions(pgtest_util.Connections):
    """Every connection a test opens, closed at teardown even when a fault broke it."""

    def open(self, dsn, autocommit=True, retry=False, **kw):
        if retry:
            conn = connect_retry(dsn, autocommit=autocommit, **kw)
        else:
            conn = psycopg.connect(dsn, autocommit=autocommit, connect_timeout=10, **kw)
        return self.keep(conn)

    def close(self):
        for bg in helpers.RUNNING:
            if not bg.done():
                try:
                    bg.conn.cancel()
                except Exception:  # noqa: BLE001 - the connection may be gone already
                    pass
                bg.wait(10)
        helpers.RUNNING.clear()
        super().close()


@pytest.fixture
def sessions():
    s = Sessions()
    yield s
    s.close()


@pytest.fixture
def pg_version():
    return int(env("FAULTS_VERSION"))


@pytest.fixture
def bindir():
    return env("FAULTS_BINDIR")


@pytest.fixture
def main_dsn():
    return env("FAULTS_MAIN")


@pytest.fixture
def main(sessions, main_dsn):
    """Opens a session on the main (primary) server. Retries the connection: an earlier
    test may have crash-restarted it."""
    return lambda **kw: sessions.open(main_dsn, retry=True, **kw)


@pytest.fixture
def admin(main):
    """An observer session on the main server (autocommit)."""
    return main()


@pytest.fixture
def standby(sessions):
    dsn = env("FAULTS_STANDBY")
    return lambda **kw: sessions.open(dsn, retry=True, **kw)


@pytest.fixture
def small(sessions):
    """Sessions on the server with a tiny shared lock table."""
    dsn = env("FAULTS_SMALL")
    return lambda **kw: sessions.open(dsn, **kw)


@pytest.fixture
def bouncer(sessions):
    """Clients of PgBouncer (transaction pooling). No server-side prepared statements:
    PgBouncer 1.18 cannot route them in transaction mode."""
    dsn = env("FAULTS_BOUNCER")
    return lambda **kw: sessions.open(dsn, prepare_threshold=None, **kw)


@pytest.fixture
def bouncer_single(sessions):
    """Clients of the PgBouncer database whose pool has a single server connection."""
    dsn = env("FAULTS_BOUNCER_SINGLE")
    return lambda **kw: sessions.open(dsn, prepare_threshold=None, **kw)


@pytest.fixture
def pool_size():
    return int(env("FAULTS_POOL_SIZE"))


@pytest.fixture
def main_log():
    return env("FAULTS_MAIN_LOG")


@pytest.fixture
def gids(main_dsn):
    """Global transaction ids a test prepares; whatever is left is rolled back (with a
    connection of its own: the test may have crash-restarted the server)."""
    made = []
    yield made
    if made:
        with connect_retry(main_dsn, autocommit=True) as conn:
            for gid in made:
                if conn.execute("SELECT count(*) FROM pg_prepared_xacts WHERE gid = %s", (gid,)).fetchone()[0]:
                    conn.execute(f"ROLLBACK PREPARED '{gid}'")
