"""Fixtures of the failover suite. scripts/failover-tests.sh installs the extension and
passes the version, binaries, a directory and a port range in FAILOVER_* environment
variables (and, on 15, a running etcd for Patroni); a missing variable fails the test (a
failover test that silently skips would prove nothing). The tests start their servers
themselves: the point is to crash, restart and promote them."""

import os

import pytest

import cluster
import pgtest_util

cluster.become_subreaper()

env = pgtest_util.env_reader("scripts/failover-tests.sh VERSION")


# Port slots, each FAILOVER_PORT_BASE + 20 * slot (scripts/failover-tests.sh).
PORT_SLOTS = {
    "primary": 0,
    "standby": 1,
    "restarts": 2,
    "etcd-client": 3,
    "etcd-peer": 4,
    "node1-pg": 5,
    "node1-api": 6,
    "node2-pg": 7,
    "node2-api": 8,
    "standby2": 9,
}


@pytest.fixture
def port():
    base = int(env("FAILOVER_PORT_BASE"))
    return lambda what: base + 20 * PORT_SLOTS[what]


@pytest.fixture
def pg_version():
    return int(env("FAILOVER_VERSION"))


@pytest.fixture
def bindir():
    return env("FAILOVER_BINDIR")


@pytest.fixture
def workdir(request):
    """A fresh directory for this test's servers, under the suite's directory, named
    after its module (short: socket paths have at most 107 bytes)."""
    d = os.path.join(env("FAILOVER_DIR"), request.module.__name__.removeprefix("test_"))
    cluster.make_dir(d)
    return d


@pytest.fixture
def preload():
    """postgresql.conf lines every server of the suite gets."""
    if os.environ.get("FAILOVER_NO_EXTENSION") == "1":  # orchestration development only
        return []
    return [f"shared_preload_libraries = '{cluster.PRELOAD}'"]


class Procs(pgtest_util.Connections):
    """Every server and connection a test starts, killed and closed at teardown, also
    when the test failed half-way."""

    def __init__(self):
        super().__init__()
        self.items = []

    def add(self, item):
        self.items.append(item)
        return item

    def close(self):
        super().close()
        errors = []
        for item in reversed(self.items):
            try:
                if isinstance(item, cluster.Server):
                    item.kill_hard()
                else:
                    item.stop()
            except Exception as e:  # noqa: BLE001 - stop the others, then report
                errors.append(f"{item}: {e!r}")
        assert not errors, f"could not stop: {errors}"


@pytest.fixture
def procs():
    p = Procs()
    yield p
    p.close()


@pytest.fixture
def server(procs, bindir, workdir, port):
    """Factory: a Server of this test (not yet initialised or started)."""

    def make(name, slot=None):
        return procs.add(cluster.Server(bindir, workdir, name, port(slot or name)))

    return make


@pytest.fixture
def connect(procs):
    """Open a connection to a server or Patroni node, closed at teardown."""

    def open_(node, **kw):
        return procs.keep(node.connect(**kw))

    return open_


@pytest.fixture
def report():
    """Append a line to the suite's report (scripts/failover-tests.sh prints it)."""
    path = os.environ.get("FAILOVER_REPORT")

    def write(line):
        if path:
            with open(path, "a", encoding="utf-8") as f:
                f.write(line + "\n")

    return write
