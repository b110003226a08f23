"""Issue 5, item 3: a waiting lock call interrupted by pg_cancel_backend, statement_timeout
or lock_timeout raises the usual error and holds nothing new afterwards (also when a
_many call had already taken part of its set); and a deadlock among three sessions
mixing lock_named, lock_pair / xact_lock_pair and xact_lock_many: exactly one gets 40P01,
the others proceed, and pg_locks holds exactly what the survivors should hold."""

import time
import uuid

import pytest

from helpers import PATIENCE, Bg, advisory_rows, backend_pid, named_tag, pair_tag, wait_until, wait_waiting
from pgtest_util import key64, one, sqlstate

# (label, statement run by the waiter, inside a transaction?) — %(n)s is the contested
# name; the holder takes the same lock in the same key space.
CALLS = [
    ("lock_named", "SELECT lock_named(%(n)s)", False),
    ("lock_named timeout overload", "SELECT lock_named(%(n)s, '60s')", False),
    ("lock_named_shared", "SELECT lock_named_shared(%(n)s)", False),
    ("xact_lock_named", "SELECT xact_lock_named(%(n)s)", True),
    ("lock_pair", "SELECT lock_pair('cancel-ns', %(n)s)", False),
    ("xact_lock_pair timeout overload", "SELECT xact_lock_pair('cancel-ns', %(n)s, '60s')", True),
    ("lock_many", "SELECT lock_many(%(many)s)", False),
    ("xact_lock_many", "SELECT xact_lock_many(%(many)s)", True),
    ("lock_many timeout overload", "SELECT lock_many(%(many)s, '60s')", False),
]

HOW = {
    # how: (sqlstate, message)
    "pg_cancel_backend": ("57014", "canceling statement due to user request"),
    "statement_timeout": ("57014", "canceling statement due to statement timeout"),
    "lock_timeout": ("55P03", "canceling statement due to lock timeout"),
}


def names_below(name, count, prefix):
    """`count` names whose keys sort below `name`'s: a _many call takes them (in key
    order) before it has to wait for `name`."""
    out, i = [], 0
    while len(out) < count:
        candidate = f"{prefix}-{i}"
        if key64(candidate) < key64(name):
            out.append(candidate)
        i += 1
    return out


# A timeout overload waits with its own timeout in place of the caller's lock_timeout
# (README, "Timeouts on one call"), so lock_timeout is tried on the plain calls only.
CASES = [
    pytest.param(label, sql, in_xact, how, id=f"{label}-{how}")
    for label, sql, in_xact in CALLS
    for how in HOW
    if not (how == "lock_timeout" and "timeout overload" in label)
]


@pytest.mark.parametrize("label,sql,in_xact,how", CASES)
def test_interrupted_wait_raises_and_holds_nothing_new(label, sql, in_xact, how, main, admin):
    u = uuid.uuid4().hex[:8]
    contested = f"cancel-{u}"
    # a key from the upper half, so names sorting below it are easy to find
    while key64(contested) < 0:
        u = uuid.uuid4().hex[:8]
        contested = f"cancel-{u}"
    before_names = names_below(contested, 3, f"cancel-{u}-free")
    holder, waiter = main(), main()
    wp = backend_pid(waiter)
    if "pair" in label:
        holder.execute("SELECT lock_pair('cancel-ns', %s)", (contested,))
        contested_tag = pair_tag(admin, "cancel-ns", contested)
    else:
        holder.execute("SELECT lock_named(%s)", (contested,))
        contested_tag = named_tag(admin, contested)

    # What the waiter holds before: a session lock, and in a transaction an xact lock.
    waiter.execute("SELECT lock_named(%s)", (f"cancel-{u}-own",))
    if in_xact:
        waiter.execute("BEGIN")
        waiter.execute("SELECT xact_lock_named(%s)", (f"cancel-{u}-own-xact",))
    if how == "statement_timeout":
        waiter.execute("SET statement_timeout = '2s'")
    elif how == "lock_timeout":
        waiter.execute("SET lock_timeout = '2s'")
    before = advisory_rows(admin, [wp])

    params = {"n": contested, "many": before_names + [contested]}
    call = Bg(waiter, sql, params)
    wait_waiting(admin, wp, call)
    waiting = advisory_rows(admin, [wp])
    assert (wp, *contested_tag, "ShareLock" if "shared" in label else "ExclusiveLock", False) in waiting
    if "many" in label:
        # the keys below the busy one are held while it waits: the wind-back is real
        taken = {named_tag(admin, n) for n in before_names}
        assert taken <= {r[1:4] for r in waiting if r[5]}, "the _many call did not take its lower keys first"
    if how == "pg_cancel_backend":
        assert one(admin, "SELECT pg_cancel_backend(%s)", (wp,)) is True

    assert call.wait(PATIENCE), f"{label}: the wait was not interrupted"
    state, message = HOW[how]
    assert call.error is not None, f"{label}: returned {call.row!r} instead of raising"
    assert sqlstate(call.error) == state, f"{label}: {call.error!r}"
    assert message in str(call.error)
    if in_xact:
        # The error aborted the transaction, which released its transaction locks (the
        # client may hear of the error just before the release).
        own_xact = named_tag(admin, f"cancel-{u}-own-xact")
        before = {r for r in before if r[1:4] != own_xact}
        wait_until(lambda: advisory_rows(admin, [wp]) == before, what="the aborted transaction's locks to go")
        waiter.execute("ROLLBACK")
    assert advisory_rows(admin, [wp]) == before, f"{label} after {how}: holds something new"

    # The session still works: once the holder lets go, the same call succeeds.
    waiter.execute("RESET statement_timeout")
    waiter.execute("RESET lock_timeout")
    holder.execute("SELECT pg_advisory_unlock_all()")
    if in_xact:
        waiter.execute("BEGIN")
    row = waiter.execute(sql, params).fetchone()
    assert row[0] in ("", True), f"{label}: {row!r}"  # void reads as ""
    assert (wp, *contested_tag, "ShareLock" if "shared" in label else "ExclusiveLock", True) in advisory_rows(
        admin, [wp]
    )
    if in_xact:
        waiter.execute("COMMIT")


# ---------------------------------------------------------------------------------------
# A deadlock among three sessions, checked against a model of who holds what.


class Session:
    def __init__(self, name, conn):
        self.name, self.conn, self.pid = name, conn, backend_pid(conn)
        self.holds = {}  # tag -> set of scopes ("session", "xact")
        self.in_xact = False
        self.pending = None  # [(tag, scope)] still to take, in the order the call takes them
        self.call_taken = []  # (tag, scope) taken by the pending call so far
        self.bg = None
        self.unlock = {}  # tag -> SQL that gives back one session hold

    def hold(self, tag, scope):
        self.holds.setdefault(tag, set()).add(scope)

    def drop(self, scope):
        for tag in list(self.holds):
            self.holds[tag].discard(scope)
            if not self.holds[tag]:
                del self.holds[tag]


class Model:
    """Every lock is exclusive; a pending call takes its keys in order, each as soon as no
    other session holds it, and is done when it has them all."""

    def __init__(self, sessions):
        self.sessions = sessions

    def free_for(self, me, tag):
        return all(tag not in s.holds for s in self.sessions if s is not me)

    def settle(self):
        """Grant what can be granted; returns the sessions whose call completed."""
        completed, progress = [], True
        while progress:
            progress = False
            for s in self.sessions:
                while s.pending and self.free_for(s, s.pending[0][0]):
                    tag, scope = s.pending.pop(0)
                    s.hold(tag, scope)
                    s.call_taken.append((tag, scope))
                    progress = True
                if s.pending == []:
                    s.pending, s.call_taken = None, []
                    completed.append(s)
        return completed

    def fail(self, s):
        """The call of `s` raised: all or nothing gives back what it took; an error in a
        transaction block aborts it, which releases its transaction locks at once."""
        for tag, scope in s.call_taken:
            s.holds[tag].discard(scope)
            if not s.holds[tag]:
                del s.holds[tag]
        s.pending, s.call_taken = None, []
        if s.in_xact:
            s.drop("xact")

    def expected_rows(self):
        rows = set()
        for s in self.sessions:
            for tag in s.holds:
                rows.add((s.pid, *tag, "ExclusiveLock", True))
            if s.pending:
                rows.add((s.pid, *s.pending[0][0], "ExclusiveLock", False))
        return rows


# Each waiter runs the deadlock check once, deadlock_timeout (100ms) after it starts
# waiting. Closing the cycle at once lets an earlier waiter find it (S1 in practice);
# closing it after 1 s leaves it to the last one (S3). The model handles any victim.
@pytest.mark.parametrize("close_after", [0.0, 1.0], ids=["cycle-closed-at-once", "cycle-closed-late"])
def test_three_session_deadlock_one_victim_survivors_hold_exactly_their_locks(close_after, main, admin):
    u = uuid.uuid4().hex[:8]
    while key64(f"dl-{u}-c") < 0:
        u = uuid.uuid4().hex[:8]
    n = {x: f"dl-{u}-{x}" for x in "acd"}
    ns, b = f"dl-{u}-ns", f"dl-{u}-b"
    # 'e' sorts below 'c': while S2's xact_lock_many waits for c it already holds e.
    n["e"] = names_below(n["c"], 1, f"dl-{u}-e")[0]
    tag = {x: named_tag(admin, n[x]) for x in "acde"}
    tag["b"] = pair_tag(admin, ns, b)
    order = lambda names: sorted(names, key=key64)  # noqa: E731 - the _many key order

    s1, s2, s3 = Session("S1", main()), Session("S2", main()), Session("S3", main())
    model = Model([s1, s2, s3])
    pids = [s1.pid, s2.pid, s3.pid]

    def check(what):
        assert advisory_rows(admin, pids) == model.expected_rows(), what

    # S1 (autocommit): session lock on a.  S2 (transaction): xact pair lock on b.
    # S3 (transaction): xact_lock_many(c, d).
    s1.conn.execute("SELECT lock_named(%s)", (n["a"],))
    s1.hold(tag["a"], "session")
    s1.unlock[tag["a"]] = ("SELECT unlock_named(%s)", (n["a"],))
    s2.conn.execute("BEGIN")
    s2.in_xact = True
    s2.conn.execute("SELECT xact_lock_pair(%s, %s)", (ns, b))
    s2.hold(tag["b"], "xact")
    s3.conn.execute("BEGIN")
    s3.in_xact = True
    s3.conn.execute("SELECT xact_lock_many(%s)", ([n["c"], n["d"]],))
    s3.hold(tag["c"], "xact")
    s3.hold(tag["d"], "xact")
    check("before the waits")

    # The cycle: S1 waits for b (lock_pair, session), S2 for c (xact_lock_many of c and
    # e), S3 for a (lock_named, a session lock taken inside its transaction).
    def start(s, sql, params, pending):
        s.pending = pending
        s.bg = Bg(s.conn, sql, params)
        model.settle()

    start(s1, "SELECT lock_pair(%s, %s)", (ns, b), [(tag["b"], "session")])
    s1.unlock[tag["b"]] = ("SELECT unlock_pair(%s, %s)", (ns, b))
    wait_waiting(admin, s1.pid, s1.bg)
    check("S1 waits for b")
    many = order([n["c"], n["e"]])
    start(s2, "SELECT xact_lock_many(%s)", ([n["c"], n["e"]],), [(named_tag(admin, x), "xact") for x in many])
    wait_waiting(admin, s2.pid, s2.bg)
    check("S2 waits for c")
    time.sleep(close_after)
    start(s3, "SELECT lock_named(%s)", (n["a"],), [(tag["a"], "session")])
    s3.unlock[tag["a"]] = ("SELECT unlock_named(%s)", (n["a"],))

    # deadlock_timeout is 100ms: the detector picks one victim. Wait for its error, not
    # for the first call to end: the victim's abort releases its transaction locks
    # before its error reaches the client, so a session it blocked (S2, on c) can finish
    # first.
    wait_until(lambda: any(s.bg.done() and s.bg.error is not None for s in model.sessions),
               what="the deadlock to be detected")
    victims = [s for s in model.sessions if s.bg.done() and s.bg.error is not None]
    assert len(victims) == 1, [(s.name, s.bg.error) for s in model.sessions if s.bg.done()]
    victim = victims[0]
    assert sqlstate(victim.bg.error) == "40P01", repr(victim.bg.error)
    if close_after:
        assert victim is s3, f"{victim.name} was the victim, not the session closing the cycle late"
    assert "deadlock detected" in str(victim.bg.error)
    model.fail(victim)

    errors = [victim]

    def proceed(what):
        """Wait for the calls the model says can complete now; every one must succeed,
        and every other call must still be waiting."""
        for s in model.settle():
            assert s.bg.wait(PATIENCE), f"{what}: {s.name} did not proceed"
            assert s.bg.error is None, f"{what}: {s.name}: {s.bg.error!r}"
        wait_until(lambda: advisory_rows(admin, pids) == model.expected_rows(), what=f"pg_locks after {what}")
        for s in model.sessions:
            if s.pending:
                assert not s.bg.done(), f"{what}: {s.name} finished: {s.bg.error!r}"
        check(what)

    proceed(f"{victim.name} was the deadlock victim")
    if victim.in_xact:
        victim.conn.execute("ROLLBACK")
        victim.in_xact = False
        check(f"{victim.name} rolled back")

    # Let go, session by session, of everything held by sessions not waiting any more;
    # after each step the model says who proceeds, and pg_locks must agree.
    for _ in range(10):
        idle = [s for s in model.sessions if not s.pending and (s.holds or s.in_xact)]
        if not idle:
            break
        s = idle[0]
        if s.in_xact:
            s.conn.execute("COMMIT")
            s.in_xact = False
            s.drop("xact")
        for t in [t for t, scopes in s.holds.items() if "session" in scopes]:
            sql, params = s.unlock[t]
            assert one(s.conn, sql, params) is True
            s.holds[t].discard("session")
            if not s.holds[t]:
                del s.holds[t]
        proceed(f"{s.name} let go")
    for s in model.sessions:
        assert s.bg.wait(PATIENCE)
        assert s in errors or s.bg.error is None, f"{s.name}: {s.bg.error!r}"
        assert not s.holds and not s.pending and not s.in_xact
    assert advisory_rows(admin, pids) == set()
