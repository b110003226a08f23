"""Issue 17: leased locks (lock_named_lease, named_lock_renew; DESIGN.md §8) with real
sessions on the main server. A session whose lease runs out without renewal while it is
idle (or idle in a transaction) is ended by the server (FATAL 57P01 naming the lock) and
its locks pass on; a renewed lease, a busy statement, an unlock and a session without a
lease keep their session; the session's own idle timeouts are never touched. Last,
PgBouncer in session pooling mode (a bouncer of this module's own, on 127.0.0.1:25300+V):
a client that forgets its lock loses it, one that disconnects leaves no lease behind.
Two tests pin bugs found on the way (they failed before the fix).

Every wait has a deadline; a lease is 1 s (the shortest), and "promptly" for the server
to act on an expired lease is LATE (the timer looks every 0.2 s; the rest is margin for a
loaded machine)."""

import ctypes
import os
import pwd
import signal
import subprocess
import time
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from helpers import PROMPTLY, Bg, backend_pid, wait_until, wait_waiting
from pgtest_util import one, sqlstate

LEASE = 1.0  # seconds, as the '1 second' the tests pass
LATE = 1.0  # how long after the lease ran out (or the session went idle) it may end
PGBOUNCER = "/usr/sbin/pgbouncer"


def lease_name(what):
    return f"lease-{what}-{uuid.uuid4().hex[:8]}"


def leased_session(main, what):
    """A new session on the main server that holds a fresh name under a 1 s lease: (the
    name, the session, its backend pid)."""
    name = lease_name(what)
    conn = main()
    pid = backend_pid(conn)
    assert one(conn, "SELECT lock_named_lease(%s, '1 second')", (name,)) is True
    return name, conn, pid


def alive(admin, pid):
    return one(admin, "SELECT count(*) > 0 FROM pg_stat_activity WHERE pid = %s", (pid,))


def state(admin, pid):
    return one(admin, "SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,))


def wait_ended(admin, pid, timeout=PROMPTLY):
    """Poll until backend `pid` has exited; the time.monotonic() it was first seen gone."""
    wait_until(lambda: not alive(admin, pid), timeout=timeout, what=f"backend {pid} to be ended")
    return time.monotonic()


def expiry_message(name):
    return f'terminating connection because the lease on lock "{name}" expired'


def assert_ended_for_lease(conn, name):
    """The session's next statement fails: the connection is gone, and libpq read the
    server's last words (the FATAL) before it noticed."""
    with pytest.raises(psycopg.OperationalError) as e:
        conn.execute("SELECT 1")
    assert expiry_message(name) in str(e.value), str(e.value)
    assert conn.closed


def log_mark(path):
    return os.path.getsize(path)


def wait_logged(path, mark, pid, name, lease="1 s"):
    """The server log, from `mark` on, has the FATAL that ended `pid`, with its DETAIL and
    HINT (log_line_prefix = '%m [%p] ', scripts/fault-tests.sh)."""
    want = [
        f"[{pid}] FATAL:  {expiry_message(name)}",
        f"[{pid}] DETAIL:  The session held the lock under a lease of {lease}, taken or last renewed",
        f"[{pid}] HINT:  Renew the lease with named_lock_renew()",
    ]

    def logged():
        with open(path, encoding="utf-8", errors="replace") as f:
            f.seek(mark)
            text = f.read()
        return all(w in text for w in want)

    wait_until(logged, timeout=5, what=f"the server log to say why backend {pid} ended", interval=0.05)


def holders(admin, name):
    return one(admin, "SELECT named_lock_holders(%s)", (name,))


# 1. The lease runs out while the session is idle.

def test_expired_lease_of_an_idle_session_ends_it_and_the_waiter_gets_the_lock(main, admin, main_log):
    name = lease_name("idle")
    mark = log_mark(main_log)
    holder, waiter = main(), main()
    hp, wp = backend_pid(holder), backend_pid(waiter)
    last_words = []
    holder.add_notice_handler(
        lambda d: last_words.append((d.severity, d.sqlstate, d.message_primary, d.message_detail, d.message_hint))
    )

    t_before = time.monotonic()
    assert one(holder, "SELECT lock_named_lease(%s, '1 second')", (name,)) is True
    t_taken = time.monotonic()
    w = Bg(waiter, "SELECT lock_named(%s)", (name,))
    wait_waiting(admin, wp, w)

    # while the lease runs, the view shows it on the holder's row and the waiter's place
    rows = admin.execute(
        "SELECT pid, granted, lease_expires_at - clock_timestamp(), idle_for IS NOT NULL, queue_position "
        "FROM advisory_locks_v WHERE lock_name = %s ORDER BY granted DESC",
        (name,),
    ).fetchall()
    assert [r[:2] for r in rows] == [(hp, True), (wp, False)], rows
    (_, _, left, holder_idle, holder_pos), (_, _, waiter_left, waiter_idle, waiter_pos) = rows
    assert timedelta(0) < left <= timedelta(seconds=LEASE), rows
    assert holder_idle and holder_pos is None
    assert waiter_left is None and not waiter_idle and waiter_pos == 1
    assert admin.execute(
        "SELECT pid, mode, waiters, backend_state, lease_expires_at IS NOT NULL "
        "FROM named_lock_idle_holders('0') WHERE lock_name = %s",
        (name,),
    ).fetchall() == [(hp, "exclusive", 1, "idle", True)]
    assert alive(admin, hp) and state(admin, hp) == "idle"

    # the waiter gets the lock once the server ends the holder's session
    assert w.wait(LEASE + LATE + PROMPTLY), "the waiter never got the lock"
    assert w.error is None, repr(w.error)
    ended = wait_ended(admin, hp)
    assert w.finished - t_before >= LEASE, f"the lock passed on {w.finished - t_before:.2f}s after the lease"
    assert w.finished - t_taken <= LEASE + LATE, f"the lock passed on {w.finished - t_taken:.2f}s after the lease"
    assert ended - t_taken <= LEASE + LATE, f"the holder ended {ended - t_taken:.2f}s after its 1 s lease"
    assert holders(admin, name) == [wp]

    # the client got the FATAL (as libpq reports an error that comes while idle), then EOF
    def drained():
        try:
            holder.pgconn.consume_input()
            holder.pgconn.is_busy()  # parses what arrived: the FATAL goes to the notice handler
            return False
        except psycopg.OperationalError:
            return True

    wait_until(drained, timeout=5, what="the holder's connection to be closed by the server")
    assert [w[:3] for w in last_words] == [("FATAL", "57P01", expiry_message(name))], last_words
    detail, hint = last_words[0][3:]
    assert detail.startswith("The session held the lock under a lease of 1 s, taken or last renewed"), detail
    assert "the lease ran out without renewal and the session was idle" in detail, detail
    assert hint.startswith("Renew the lease with named_lock_renew()"), hint
    with pytest.raises(psycopg.OperationalError):
        holder.execute("SELECT 1")
    wait_logged(main_log, mark, hp, name)

    assert one(waiter, "SELECT unlock_named(%s)", (name,)) is True


# 2. Renewed in time, the lease is kept.

def test_a_lease_renewed_in_time_is_kept(main, admin):
    name = lease_name("renewed")
    holder, other = main(), main()
    hp = backend_pid(holder)
    view_end = "SELECT lease_expires_at FROM advisory_locks_v WHERE lock_name = %s AND pid = %s"
    assert one(holder, "SELECT lock_named_lease(%s, '1 second')", (name,)) is True
    first_end = one(admin, view_end, (name, hp))
    assert first_end is not None

    start = time.monotonic()
    renewals = 0
    while time.monotonic() - start < 3.0:
        time.sleep(0.4)
        assert one(holder, "SELECT named_lock_renew(%s)", (name,)) is True
        renewals += 1
    assert renewals >= 7
    assert alive(admin, hp)
    assert one(holder, "SELECT named_lock_held(%s)", (name,)) is True
    assert one(other, "SELECT try_lock_named(%s)", (name,)) is False
    assert one(other, "SELECT named_lock_renew(%s)", (name,)) is False, "renewed a lease it does not hold"
    # each renewal moved the lease end shown in the view
    last_end = one(admin, view_end, (name, hp))
    assert last_end - first_end >= timedelta(seconds=2.5), (first_end, last_end)
    assert holders(admin, name) == [hp]

    # unlocking ends the lease: nothing left to renew, the lock is free
    assert one(holder, "SELECT unlock_named(%s)", (name,)) is True
    assert one(holder, "SELECT named_lock_renew(%s)", (name,)) is False
    assert one(other, "SELECT try_lock_named(%s)", (name,)) is True
    assert one(other, "SELECT unlock_named(%s)", (name,)) is True
    assert one(holder, "SELECT 1") == 1


# 3. A statement that runs past the lease is not cut short; the session ends once idle.

def test_a_busy_session_is_not_ended_until_it_is_idle_after_its_lease(main, admin, main_log):
    name = lease_name("busy")
    mark = log_mark(main_log)
    holder, other = main(), main()
    hp = backend_pid(holder)
    assert one(holder, "SELECT lock_named_lease(%s, '1 second')", (name,)) is True
    t_taken = time.monotonic()
    busy = Bg(holder, "SELECT pg_sleep(2.5), named_lock_held(%s)", (name,))

    # past the lease, still in the statement: alive, active, and the lock still held
    time.sleep(max(0.0, t_taken + LEASE + 0.5 - time.monotonic()))
    assert not busy.done()
    assert state(admin, hp) == "active"
    assert one(other, "SELECT try_lock_named(%s)", (name,)) is False

    row = busy.result(PROMPTLY)
    assert row[1] is True, "the statement lost the lock while it ran"
    # now idle with the lease run out: ended within the timer's period
    ended = wait_ended(admin, hp)
    assert ended - busy.finished <= LATE, f"ended {ended - busy.finished:.2f}s after it went idle"
    assert_ended_for_lease(holder, name)
    wait_logged(main_log, mark, hp, name)
    assert one(other, "SELECT try_lock_named(%s)", (name,)) is True
    assert one(other, "SELECT unlock_named(%s)", (name,)) is True


def test_a_lease_renewed_by_a_busy_statement_after_it_ran_out_is_kept(main, admin):
    name, holder, hp = leased_session(main, "busy-renewed")
    # the lease runs out in the middle of the statement, which then renews it
    row = holder.execute("SELECT pg_sleep(1.5), named_lock_renew(%s)", (name,)).fetchone()
    done = time.monotonic()
    assert row[1] is True
    time.sleep(0.5)  # idle, within the renewed lease
    assert alive(admin, hp)
    assert time.monotonic() - done < LEASE, "too slow to prove anything"
    assert one(holder, "SELECT named_lock_held(%s)", (name,)) is True
    assert one(holder, "SELECT unlock_named(%s)", (name,)) is True


# 4. The lease ends with the lock.

def test_unlocking_ends_the_lease(main, admin):
    base = lease_name("unlock")
    blocker = main()
    blocked_name = f"{base}-timeout"
    blocker.execute("SELECT lock_named(%s)", (blocked_name,))

    cases = {
        "unlock_named": "SELECT unlock_named(%s)",
        "pg_advisory_unlock_all": "SELECT pg_advisory_unlock_all()",
        "DISCARD ALL": "DISCARD ALL",
    }
    conns = {}
    for case, release in cases.items():
        conn = main()
        name = f"{base}-{case.replace(' ', '-')}"
        assert one(conn, "SELECT lock_named_lease(%s, '1 second')", (name,)) is True
        conn.execute(release, (name,) if "%s" in release else None)
        assert one(conn, "SELECT named_lock_held(%s)", (name,)) is False
        conns[case] = (conn, name)
    # a lease whose lock was not granted within its timeout leaves nothing behind
    conn = main()
    assert one(conn, "SELECT lock_named_lease(%s, '1 second', '100 milliseconds')", (blocked_name,)) is False
    conns["timed out"] = (conn, blocked_name)

    time.sleep(2.5)  # idle, well past the (ended) leases
    for case, (conn, name) in conns.items():
        pid = backend_pid(conn)  # the session is alive and usable
        assert alive(admin, pid), case
        assert one(conn, "SELECT named_lock_held(%s)", (name,)) is False, case
        assert one(conn, "SELECT named_lock_renew(%s)", (name,)) is False, case
        assert one(conn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s", (pid,)) == 0
    assert one(blocker, "SELECT unlock_named(%s)", (blocked_name,)) is True


# 5. Idle in a transaction counts as idle.

@pytest.mark.parametrize(
    "statement, expected_state",
    [("SELECT 1", "idle in transaction"), ("SELECT 1/0", "idle in transaction (aborted)")],
)
def test_expired_lease_ends_a_session_idle_in_a_transaction(statement, expected_state, main, admin, main_log):
    mark = log_mark(main_log)
    name, holder, hp = leased_session(main, "in-xact")
    t_taken = time.monotonic()
    holder.execute("BEGIN")
    try:
        holder.execute(statement)
    except psycopg.errors.DivisionByZero:
        pass
    assert state(admin, hp) == expected_state
    ended = wait_ended(admin, hp)
    assert ended - t_taken <= LEASE + LATE, f"ended {ended - t_taken:.2f}s after its 1 s lease"
    assert_ended_for_lease(holder, name)
    wait_logged(main_log, mark, hp, name)
    assert holders(admin, name) == []


# 6. Sessions without a lease, and the session's own idle timeouts.

def test_sessions_without_a_lease_are_untouched_and_idle_timeouts_are_left_alone(main, admin):
    name = lease_name("guc")
    plain_name = lease_name("plain")
    timeouts = ("idle_session_timeout", "idle_in_transaction_session_timeout")

    def shown(conn):
        return tuple(one(conn, f"SHOW {g}") for g in timeouts)

    # a session that holds a lock without a lease, and one idle in a transaction
    plain, plain_xact = main(), main()
    plain.execute("SELECT lock_named(%s)", (plain_name,))
    plain_xact.execute("BEGIN")
    plain_xact.execute("SELECT xact_lock_named(%s)", (plain_name + "-xact",))

    # a leasing session with its own idle timeouts, and one with the defaults
    own, default = main(), main()
    for g in timeouts:
        own.execute(f"SET {g} = '1h'")
    assert shown(own) == ("1h", "1h")
    assert shown(default) == ("0", "0")
    for conn, suffix in ((own, "own"), (default, "default")):
        assert one(conn, "SELECT lock_named_lease(%s, '1 second')", (f"{name}-{suffix}",)) is True
    assert shown(own) == ("1h", "1h") and shown(default) == ("0", "0")
    assert one(own, "SELECT named_lock_renew(%s)", (f"{name}-own",)) is True
    assert shown(own) == ("1h", "1h")
    for conn, suffix in ((own, "own"), (default, "default")):
        assert one(conn, "SELECT unlock_named(%s)", (f"{name}-{suffix}",)) is True
    assert shown(own) == ("1h", "1h") and shown(default) == ("0", "0")
    pids = {c: backend_pid(c) for c in (plain, plain_xact, own, default)}

    time.sleep(2.5)
    for pid in pids.values():
        assert alive(admin, pid)
    assert state(admin, pids[plain_xact]) == "idle in transaction"
    assert holders(admin, plain_name) == [pids[plain]]
    assert one(plain_xact, "SELECT named_lock_held(%s)", (plain_name + "-xact",)) is True
    plain_xact.execute("COMMIT")
    assert one(plain, "SELECT unlock_named(%s)", (plain_name,)) is True
    assert shown(own) == ("1h", "1h") and shown(default) == ("0", "0")
    # and a SET the user makes while holding a lease sticks
    assert one(own, "SELECT lock_named_lease(%s, '1 second')", (f"{name}-own",)) is True
    own.execute("SET idle_session_timeout = '2h'")
    assert one(own, "SELECT unlock_named(%s)", (f"{name}-own",)) is True
    assert shown(own) == ("2h", "1h")


# 7. Re-entrancy, several leases, and a role without superuser.

@pytest.fixture
def plain_role(main_dsn):
    """A LOGIN role that is not a superuser (the suite's servers trust local logins)."""
    role = f"lease_user_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(main_dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER")
    yield role
    with psycopg.connect(main_dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f"DROP ROLE {role}")


def test_a_lease_covers_a_reentrant_hold_and_needs_no_superuser(main, admin, plain_role, main_log):
    mark = log_mark(main_log)
    # a lease taken on a lock already held covers the whole hold: one unlock of two
    # leaves it held and leased
    reentrant_name = lease_name("reentrant")
    reentrant = main()
    reentrant.execute("SELECT lock_named(%s)", (reentrant_name,))
    assert one(reentrant, "SELECT lock_named_lease(%s, '1 second')", (reentrant_name,)) is True
    t_reentrant = time.monotonic()
    assert one(reentrant, "SELECT named_lock_hold_count(%s)", (reentrant_name,)) == 2
    assert one(reentrant, "SELECT unlock_named(%s)", (reentrant_name,)) is True
    assert one(reentrant, "SELECT named_lock_hold_count(%s)", (reentrant_name,)) == 1
    assert one(reentrant, "SELECT named_lock_held(%s)", (reentrant_name,)) is True

    # an ordinary role takes a lease, and loses its session like anyone
    role_name = lease_name("role")
    user = main(user=plain_role)
    assert one(user, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is False
    assert one(user, "SELECT lock_named_lease(%s, '1 second')", (role_name,)) is True
    t_role = time.monotonic()
    assert one(user, "SELECT named_lock_hold_count(%s)", (role_name,)) == 1
    assert admin.execute(
        "SELECT usename, lease_expires_at IS NOT NULL FROM advisory_locks_v WHERE lock_name = %s", (role_name,)
    ).fetchall() == [(plain_role, True)]

    for conn, name, t in ((reentrant, reentrant_name, t_reentrant), (user, role_name, t_role)):
        pid = conn.pgconn.backend_pid
        ended = wait_ended(admin, pid)
        assert ended - t <= LEASE + LATE, f"{name}: ended {ended - t:.2f}s after its 1 s lease"
        assert_ended_for_lease(conn, name)
        wait_logged(main_log, mark, pid, name)
        assert holders(admin, name) == []


def test_the_session_ends_for_the_earliest_lease_it_still_holds(main, admin, main_log):
    mark = log_mark(main_log)
    short, long_ = lease_name("short"), lease_name("long")
    holder = main()
    hp = backend_pid(holder)
    assert one(holder, "SELECT lock_named_lease(%s, '1 second')", (short,)) is True
    assert one(holder, "SELECT lock_named_lease(%s, '2 seconds')", (long_,)) is True
    t_taken = time.monotonic()
    assert one(holder, "SELECT unlock_named(%s)", (short,)) is True
    time.sleep(max(0.0, t_taken + 1.5 - time.monotonic()))
    assert alive(admin, hp), "ended for a lease it gave up"
    ended = wait_ended(admin, hp)
    assert ended - t_taken <= 2.0 + LATE, f"ended {ended - t_taken:.2f}s after its 2 s lease"
    with pytest.raises(psycopg.OperationalError) as e:
        holder.execute("SELECT 1")
    assert expiry_message(long_) in str(e.value), str(e.value)
    wait_logged(main_log, mark, hp, long_, lease="2 s")


def test_bad_lease_arguments_are_errors_and_take_nothing(main):
    name = lease_name("bad")
    conn = main()
    for sql, params, code in [
        ("SELECT lock_named_lease(%s, '999 milliseconds')", (name,), "22023"),
        ("SELECT lock_named_lease(%s, '0')", (name,), "22023"),
        ("SELECT lock_named_lease(%s, NULL)", (name,), "22004"),
        ("SELECT lock_named_lease(%s, '1 second', NULL)", (name,), "22004"),
        ("SELECT lock_named_lease(NULL, '1 second')", None, "22004"),
        ("SELECT named_lock_renew(NULL)", None, "22004"),
    ]:
        with pytest.raises(psycopg.Error) as e:
            conn.execute(sql, params)
        assert sqlstate(e.value) == code, (sql, e.value)
        assert one(conn, "SELECT named_lock_held(%s)", (name,)) is False, sql
    assert one(conn, "SELECT named_lock_renew(%s)", (name,)) is False


# Found while writing these tests (both failed before the fix): the lease must end when
# the commit releases the last hold, and a lease record must not outlive its session.

def test_the_lease_ends_when_the_commit_releases_the_last_hold(main, admin):
    name, conn, pid = leased_session(main, "xact-last")
    conn.execute("BEGIN")
    conn.execute("SELECT xact_lock_named(%s)", (name,))
    assert one(conn, "SELECT unlock_named(%s)", (name,)) is True  # the session hold; the xact hold stays
    conn.execute("COMMIT")
    assert one(admin, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s", (pid,)) == 0
    time.sleep(LEASE + LATE)  # idle, holding nothing
    assert alive(admin, pid), "ended for the lease on a lock it no longer held"


def test_the_next_holder_does_not_inherit_an_ended_sessions_lease(main, admin):
    name = lease_name("inherit")
    leaser, waiter = main(), main()
    lp, wp = backend_pid(leaser), backend_pid(waiter)
    assert one(leaser, "SELECT lock_named_lease(%s, '1 minute')", (name,)) is True
    w = Bg(waiter, "SELECT lock_named(%s)", (name,))
    wait_waiting(admin, wp, w)
    assert one(admin, "SELECT pg_terminate_backend(%s)", (lp,)) is True
    w.result(PROMPTLY)
    try:
        assert holders(admin, name) == [wp]
        rows = admin.execute(
            "SELECT pid, lease_expires_at FROM advisory_locks_v WHERE lock_name = %s", (name,)
        ).fetchall()
        assert rows == [(wp, None)], f"the waiter, which took no lease, shows one: {rows}"
    finally:
        assert one(waiter, "SELECT unlock_named(%s)", (name,)) is True


# 8. PgBouncer in session pooling mode: a client that forgets its lock.

def _die_with_parent():
    # Runs in the child after it switched user: the bouncer goes when pytest does (also
    # when pytest is killed by the suite's time budget), and no stray one keeps the port.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@pytest.fixture
def session_bouncer(sessions, main_dsn, main_log, pg_version):
    """A PgBouncer of this test's own, pool_mode = session, in front of the main server
    (the suite's PgBouncer pools transactions); its server_reset_query is PgBouncer's
    default (DISCARD ALL). Run as the server's user; yields the clients' DSN."""
    target = conninfo_to_dict(main_dsn)
    port = 25300 + pg_version
    d = Path(main_log).parent.parent / "pgbouncer-session"
    d.mkdir(exist_ok=True)
    (d / "userlist.txt").write_text('"postgres" ""\n')
    (d / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"faults = host={target['host']} port={target['port']} dbname={target['dbname']} user=postgres\n"
        "\n[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {d}/userlist.txt\n"
        "pool_mode = session\ndefault_pool_size = 4\nmax_client_conn = 20\n"
        "server_check_delay = 0\nquery_wait_timeout = 20\n"
        f"logfile = {d}/pgbouncer.log\n"
    )
    kw = {}
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        pw = pwd.getpwnam("postgres")
        for p in (d, d / "userlist.txt", d / "pgbouncer.ini"):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        kw = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    proc = subprocess.Popen(
        [PGBOUNCER, str(d / "pgbouncer.ini")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
        **kw,
    )
    dsn = f"host=127.0.0.1 port={port} user=postgres dbname=faults"
    try:

        def up():
            if proc.poll() is not None:
                log = (d / "pgbouncer.log").read_text(errors="replace") if (d / "pgbouncer.log").exists() else ""
                raise AssertionError(f"PgBouncer exited with {proc.returncode}:\n{log[-2000:]}")
            try:
                with psycopg.connect(dsn, connect_timeout=5) as c:
                    return c.execute("SELECT 1").fetchone()[0] == 1
            except psycopg.OperationalError:
                return False

        wait_until(up, timeout=10, what="PgBouncer (session pooling) to accept clients", interval=0.05)
        yield dsn
    finally:
        proc.terminate()  # SIGTERM: immediate shutdown
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_a_pgbouncer_client_that_forgets_its_leased_lock_loses_it(session_bouncer, sessions, admin):
    name = f"job-{uuid.uuid4().hex[:8]}"
    forgetful, other = sessions.open(session_bouncer), sessions.open(session_bouncer)
    fp, op = backend_pid(forgetful), backend_pid(other)
    assert fp != op, "session pooling gives each client its own server connection"
    assert one(forgetful, "SELECT lock_named_lease(%s, '1 second')", (name,)) is True
    t_taken = time.monotonic()
    # ... and never unlocks: it stays connected, idle

    w = Bg(other, "SELECT lock_named(%s, '10 seconds')", (name,))
    wait_waiting(admin, op, w)
    assert w.result(LEASE + LATE + PROMPTLY) == (True,)
    assert w.finished - t_taken <= LEASE + 2.0, f"the lock passed on {w.finished - t_taken:.2f}s after the lease"
    assert holders(admin, name) == [op]
    wait_ended(admin, fp)
    # the forgetful client finds out at its next query: PgBouncer passed the server's
    # FATAL on (then adds its own "server conn crashed?") and closed the client
    assert_ended_for_lease(forgetful, name)
    # the pool goes on serving new clients
    fresh = sessions.open(session_bouncer)
    assert one(fresh, "SELECT named_lock_held(%s)", (name,)) is False
    assert one(other, "SELECT unlock_named(%s)", (name,)) is True


def test_pgbouncer_reset_of_a_departed_client_ends_its_lease(session_bouncer, sessions, admin):
    """A client that disconnects holding a leased lock: PgBouncer's server_reset_query
    (DISCARD ALL) releases it before the server connection goes back to the pool, and
    with it the lease, so the pooled server connection is not ended later."""
    name = f"job-{uuid.uuid4().hex[:8]}"
    leaver = sessions.open(session_bouncer)
    server = backend_pid(leaver)
    assert one(leaver, "SELECT lock_named_lease(%s, '1 second')", (name,)) is True
    t_taken = time.monotonic()
    leaver.close()
    wait_until(lambda: holders(admin, name) == [], what="PgBouncer's reset to release the lock")
    time.sleep(max(0.0, t_taken + LEASE + LATE - time.monotonic()))
    assert alive(admin, server), "the pooled server connection was ended for a lease DISCARD ALL ended"
    assert state(admin, server) == "idle"
    # and the next client of the pool is served (by that connection or another)
    nxt = sessions.open(session_bouncer)
    assert one(nxt, "SELECT named_lock_held(%s)", (name,)) is False
