"""Issue 16: fencing tokens across a Patroni failover (PostgreSQL 15 only: Debian's
Patroni drives Debian's PostgreSQL 15). Two members on one etcd (started by
scripts/failover-tests.sh), asynchronous streaming replication, short ttl/loop_wait so
that a failover takes seconds. The leader's Patroni and its PostgreSQL are SIGKILLed;
Patroni promotes the replica once the leader key expires. The new leader's tokens are
larger than every token the old leader handed out, and the trigger pattern refuses the
old leader's writer there."""

import os
import time
import uuid

import pytest

from cluster import PatroniNode, gone, wait_until
from fencing import (
    first_write,
    grants,
    outrun_copy,
    replicated_write,
    row,
    tokens_after_promotion,
    trigger_refuses_old_tokens,
    wait_streaming_async,
)
from pgtest_util import one

TTL, LOOP_WAIT, RETRY_TIMEOUT = 10, 1, 3
# Bound of the failover: the leader key expires within TTL, then one or two loops.
FAILOVER_BOUND = 60


@pytest.fixture
def etcd():
    value = os.environ.get("FAILOVER_ETCD")
    if not value:
        pytest.fail("FAILOVER_ETCD is not set: scripts/failover-tests.sh 15 starts etcd", pytrace=False)
    return value


@pytest.fixture
def nodes(procs, workdir, port, etcd, bindir, preload, pg_version):
    assert pg_version == 15, "Debian's Patroni drives PostgreSQL 15"
    scope = f"fo-{uuid.uuid4().hex[:6]}"  # the cluster's name in etcd
    made = []
    for name in ("node1", "node2"):
        node = PatroniNode(
            workdir, scope, name, port(f"{name}-pg"), port(f"{name}-api"), etcd, bindir, preload=bool(preload)
        )
        node.write_config(TTL, LOOP_WAIT, RETRY_TIMEOUT)
        made.append(procs.add(node))
    return made


def wait_role(node, roles, timeout=90):
    """Wait until the member's REST API reports one of `roles`, its PostgreSQL running."""

    def check():
        st = node.state()
        if st.get("role") in roles and st.get("state") == "running":
            return True
        if node.proc.poll() is not None:
            raise AssertionError(f"{node} Patroni exited {node.proc.returncode}:\n{node.log_text()[-3000:]}")
        return False

    try:
        wait_until(check, timeout=timeout, what=f"{node} to run as {roles}", interval=0.2)
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- {node.log}:\n{node.log_text()[-3000:]}") from None


def test_patroni_failover_outranks_every_token_of_the_old_leader(nodes, connect, report):
    u = uuid.uuid4().hex[:8]
    names = [f"pt-{u}-{i}" for i in range(5)]
    row_lock = f"pt-{u}-row1"
    node1, node2 = nodes

    # node1 bootstraps the cluster and leads; node2 clones it and replicates.
    node1.start()
    wait_role(node1, ("master", "primary"))
    wait_until(node1.is_primary, what="node1 to hold the leader lock")
    leader, leader2 = connect(node1), connect(node1)
    before, first = first_write([leader, leader2], names, row_lock, 100)

    node2.start()
    wait_role(node2, ("replica",))
    assert not node2.is_primary()
    wait_streaming_async(leader, "node2")
    replica = connect(node2)
    assert one(replica, "SELECT pg_is_in_recovery()") is True
    assert one(replica, "SHOW shared_preload_libraries") == one(leader, "SHOW shared_preload_libraries")

    # Grants after the replica exists; the old leader's writer and its replicated write.
    after = grants([leader, leader2], names, 100)
    assert min(after) > first
    after.append(outrun_copy(leader, names[0], node2.data))
    zombie = connect(node1)
    zt = replicated_write(leader, zombie, replica, row_lock, "old leader")
    last = grants([leader, leader2], names, 50)
    old = [*before, first, *after, zt, *last]
    assert max(old) == last[-1]

    # Kill the leader hard: Patroni first (or it would restart its PostgreSQL), then
    # the postmaster and all its processes.
    patroni_pid, postmaster_pid = node1.proc.pid, node1.postmaster_pid()
    t0 = time.monotonic()
    node1.kill_hard()
    assert gone(patroni_pid) and gone(postmaster_pid)
    wait_until(node2.is_primary, timeout=FAILOVER_BOUND, what="Patroni to promote node2", interval=0.1)
    took = time.monotonic() - t0
    report(f"Patroni failover (leader SIGKILLed -> replica is primary): {took:.1f}s")

    # On the new leader (the replica's session from before the failover, too).
    new_leader, new2 = connect(node2), connect(node2)
    wait_until(lambda: one(new_leader, "SELECT NOT pg_is_in_recovery()"), what="node2 out of recovery")
    tokens_after_promotion(replica, [new_leader, new2], names, 100, old, tl=2)

    # The trigger pattern: the old leader's tokens write nothing on the new leader.
    assert row(new_leader, 1) == (zt, "old leader")
    holder = connect(node2)
    nt = trigger_refuses_old_tokens(new_leader, holder, row_lock, (zt, max(old)), "new leader")
    assert row(new2, 1) == (nt, "new leader")
