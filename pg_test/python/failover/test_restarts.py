"""Issue 16: fencing tokens of one server keep growing across every way it can go down
and come back: SIGKILL of a backend (the postmaster's crash restart reinitialises shared
memory, the counter with it), pg_ctl restart -m fast and -m immediate, and SIGKILL of
the postmaster and all its processes (as in a power cut, but with the OS's page cache
kept). The counter's high-water mark in pg_named_locks.fence is never below a counter
handed out, and after a restart the counter starts above it."""

import os
import re
import signal
import uuid

from cluster import kill, wait_until
from fencing import FENCE_FILE, counter_of, fence_mark, grants, tl_of
from pgtest_util import one


def test_tokens_grow_across_crash_restart_and_every_restart(server, connect, preload):
    u = uuid.uuid4().hex[:8]
    names = [f"rs-{u}-{i}" for i in range(5)]
    srv = server("restarts")
    srv.init(*preload)
    srv.start()
    c = connect(srv)
    c.execute("CREATE EXTENSION pg_named_locks")
    fence_path = os.path.join(srv.data, FENCE_FILE)

    history = grants([c, connect(srv)], names, 100)
    assert os.path.isfile(fence_path), f"no {FENCE_FILE} in the data directory after fenced grants"
    assert fence_mark(srv.data) >= max(counter_of(t) for t in history)

    def after_event(event, fresh_counter_above_mark):
        """Tokens after `event` (the server accepts connections again) are larger than
        every token before it."""
        mark = fence_mark(srv.data)
        a, b = connect(srv), connect(srv)
        assert one(a, "SELECT pg_is_in_recovery()") is False
        tokens = grants([a, b], names, 50)
        assert min(tokens) > max(history), f"{event}: a token is not larger than those before"
        assert {tl_of(t) for t in tokens} == {1}, event
        if fresh_counter_above_mark:
            # the counter restarts above the durable mark (nothing below it is reused)
            assert counter_of(min(tokens)) > mark, (event, counter_of(min(tokens)), mark)
        assert fence_mark(srv.data) >= max(counter_of(t) for t in tokens), event
        history.extend(tokens)
        a.close()
        b.close()

    # 1. SIGKILL of a backend that holds a fenced lock: crash restart of the server.
    victim = connect(srv)
    vt = one(victim, "SELECT lock_named_fenced(%s)", (names[0],))
    history.append(vt)
    vpid = one(victim, "SELECT pg_backend_pid()")
    kill(vpid, signal.SIGKILL)
    wait_until(
        lambda: (
            re.search(rf"\(PID {vpid}\) was terminated by signal 9", srv.log_text())
            and "all server processes terminated; reinitializing" in srv.log_text()
        ),
        what="the crash restart in the server log",
    )
    after_event("crash restart", fresh_counter_above_mark=True)
    obs = connect(srv)
    assert one(obs, "SELECT named_lock_check(%s, %s)", (names[0], vt)) is False

    # 2. pg_ctl restart -m fast; 3. -m immediate (no shutdown checkpoint: crash recovery)
    for mode in ("fast", "immediate"):
        obs.close()
        holder = connect(srv)
        ht = one(holder, "SELECT lock_named_fenced(%s)", (names[1],))
        history.append(ht)
        holder.close()
        srv.restart(mode)
        after_event(f"pg_ctl restart -m {mode}", fresh_counter_above_mark=True)
        obs = connect(srv)
        assert one(obs, "SELECT named_lock_check(%s, %s)", (names[1], ht)) is False

    # 4. SIGKILL of the postmaster and of every process it started, then a start.
    obs.close()
    pm = srv.postmaster_pid()
    srv.kill_hard()
    assert srv.postmaster_pid() == pm  # postmaster.pid is left behind, stale
    srv.start()
    after_event("SIGKILL of the postmaster", fresh_counter_above_mark=True)

    assert len(set(history)) == len(history)
    assert history == sorted(history)
