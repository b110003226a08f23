#!/usr/bin/env python3
"""Bounded randomized soak of pg_named_locks with fault injection and a model check.

N sessions (threads, one connection each) run random lock operations on a small pool of
names, pairs and (namespace, id) locks for a fixed time: session and transaction locks,
exclusive and shared, waiting / try / per-call timeout variants, the _many functions,
unlocks, built-in pg_advisory_* calls on the same keys, transactions that commit or roll
back. lock_timeout is small, so waits end; deadlocks happen and are fine. A chaos thread
cancels statements (mostly of sessions waiting for a lock), terminates backends and
closes client sockets; lost sessions reconnect.

Each session keeps a model of what it holds, updated only from call outcomes. Every few
seconds all sessions stop at a barrier outside transactions and the controller checks
pg_locks, advisory_locks_v, named_lock_holders, the registry and named_lock_stats against
the models; at the end every session unlocks everything it holds, one unlock per hold.

    soak.py --host 127.0.0.1 --port 27118 --seconds 60 --sessions 16 --seed 42 [--report FILE]

Exit status 0 when no invariant was violated.
"""

import argparse
import json
import os
import random
import socket
import sys
import threading
import time
import traceback
from collections import Counter, defaultdict

import psycopg
from psycopg import pq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import DONT_OWN_RE, EXCL, MARKER_RE, SHARE, Model, Op, key32, key64, lit, pool  # noqa: E402

DB = "soak_named_locks"
LOCK_TIMEOUT = "200ms"
BARRIER_TIMEOUT = 60
# seconds after --seconds at which the driver gives up on itself (the shell script's
# hard bound is later, so the report still gets written)
WATCHDOG_GRACE = 45

INVARIANTS = {
    "call_outcome": "every call either completes or raises an expected SQLSTATE",
    "unlock_result": "unlock results match the model (false + WARNING exactly when not held)",
    "reentrant_try": "a try of a lock the session already holds succeeds",
    "warnings": "no unexpected warnings",
    "disconnects": "connections are lost exactly where a fault was injected",
    "pg_locks_model": "pg_locks shows exactly the model's locks for every live session",
    "no_waiters": "no waiting advisory locks at quiesce",
    "no_orphans": "ended sessions leave no advisory locks behind",
    "view_matches": "advisory_locks_v agrees with pg_locks",
    "view_names": "advisory_locks_v shows the right lock_name for every lock",
    "holders": "named_lock_holders agrees with the models",
    "registry": "named_lock_registry_info() is consistent",
    "lookups": "named_lock_key/key32/name round-trip for every name used",
    "stats": "named_lock_stats is consistent with the observed calls",
    "final_counts": "at the end, N holds take exactly N unlocks",
    "final_empty": "no advisory locks remain after the final unlocks",
    "exercised": "the soak saw contention, timeouts and landed faults",
}


class Lost(Exception):
    """The session's connection is gone (terminated, socket closed, or worse)."""


class Report:
    def __init__(self):
        self.lock = threading.Lock()
        self.checks = Counter()
        self.violations = defaultdict(list)
        self.fatal = []

    def check(self, inv, ok, msg=""):
        assert inv in INVARIANTS, inv
        with self.lock:
            self.checks[inv] += 1
            if not ok:
                v = self.violations[inv]
                v.append(msg)
                if len(v) <= 5:
                    print(f"VIOLATION [{inv}] {msg}", flush=True)

    def n_violations(self):
        return sum(len(v) for v in self.violations.values())


class Session(threading.Thread):
    def __init__(self, ctl, sid, seed):
        super().__init__(name=f"soak-{sid}", daemon=True)
        self.ctl = ctl
        self.sid = sid
        self.rng = random.Random(seed)
        # The chaos thread acts on a session only under this mutex and only in state
        # 'op'. A session switches to 'protected' under it before statements whose
        # outcome must not be disturbed (setup, quiesce, final unlocks) and before
        # touching its connection objects. pg_cancel_backend returns after kill(), so a
        # cancel sent in 'op' state is pending before the session's next statement is
        # read, and the server discards it while reading a command: it cannot hit a
        # protected statement.
        self.mutex = threading.Lock()
        self.state = "protected"
        self.kill_pending = False  # chaos terminated the backend or closed the socket
        self.conn = None
        self.pid = None
        self.sock = None
        self.model = Model()
        self.in_txn = False
        self.txn_left = 0
        self.notices = []
        # call bookkeeping (across reconnects), read by the controller at quiesce
        self.ops = Counter()
        self.errors = Counter()
        self.reconnects = 0
        self.late = 0
        self.obs_acq = Counter()  # registry entry -> completed successful acquisitions
        self.amb_acq = Counter()  # registry entry -> acquisitions whose outcome was lost
        self.obs_tryfail = 0
        self.obs_timeouts = 0
        self.amb_fail = 0
        self.attempted = set()  # registry entries of every acquire attempt
        self.completed = set()  # ... of completed acquire calls (registered for sure)

    # ---- connection -------------------------------------------------------------

    def _notice(self, d):
        sev = d.severity_nonlocalized or d.severity
        # A termination that reaches an idle connection arrives as a notice; the loss of
        # the connection is then checked against the injected faults.
        if sev == "FATAL" and (d.sqlstate or "").startswith("57P"):
            return
        self.notices.append((sev, d.message_primary or ""))

    def connect(self):
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg.connect(
                    self.ctl.dsn, autocommit=True, prepare_threshold=None,
                    application_name=f"soak-{self.sid}",
                )
                conn.add_notice_handler(self._notice)
                conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
                # a safety net only: every wait ends through lock_timeout or a per-call timeout
                conn.execute("SET statement_timeout = '10s'")
                # the call markers are WARNINGs (one per call): keep them out of the server log
                conn.execute("SET log_min_messages = error")
                break
            except psycopg.Error as e:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"session {self.sid}: cannot connect: {e}") from e
                time.sleep(0.2)
        with self.mutex:
            self.conn = conn
            self.pid = conn.info.backend_pid
            # A duplicate of the socket for the chaos thread to shut down: libpq may close
            # its own descriptor at any time, and that number may then be reused.
            self.sock = socket.fromfd(conn.fileno(), socket.AF_INET, socket.SOCK_STREAM)
        self.model.reset()
        self.in_txn = False

    def set_state(self, state):
        if self.state != state:
            with self.mutex:
                self.state = state

    def is_lost(self, e):
        s = getattr(e, "sqlstate", None)
        if s is None:
            return isinstance(e, (psycopg.OperationalError, psycopg.InterfaceError)) or self.conn.broken
        return self.conn.broken or self.conn.closed or s.startswith("08") or s in ("57P01", "57P02", "57P03")

    def lost(self, e):
        with self.mutex:
            self.state = "protected"
            expected = self.kill_pending
            self.kill_pending = False
            sock, conn, pid = self.sock, self.conn, self.pid
            self.sock = self.conn = self.pid = None
        if sock is not None:
            sock.close()
        try:
            conn.close()
        except Exception:
            pass
        self.ctl.note_dead(pid)
        self.ctl.report.check("disconnects", expected,
                              f"session {self.sid} (pid {pid}) lost its connection with no fault injected: {e}")
        self.reconnects += 1
        self.connect()

    def q(self, sql, params=None):
        """A protected statement; connection loss raises Lost."""
        try:
            cur = self.conn.execute(sql, params)
            return cur.fetchall() if cur.description else None
        except psycopg.Error as e:
            if self.is_lost(e):
                raise Lost(e) from e
            raise

    # ---- main loop --------------------------------------------------------------

    def run(self):
        ctl = self.ctl
        try:
            self.connect()
            while not ctl.dead.is_set():
                if ctl.pause.is_set():
                    self.quiesce()
                    ctl.pause_barrier.wait(BARRIER_TIMEOUT)
                    ctl.resume_barrier.wait(BARRIER_TIMEOUT)
                    if ctl.finishing:
                        self.final_release()
                        ctl.done_barrier.wait(BARRIER_TIMEOUT)
                        return
                    continue
                self.set_state("op")
                try:
                    self.step()
                except Lost as e:
                    self.lost(e)
                if ctl.think > 0:
                    time.sleep(self.rng.uniform(0, ctl.think))
        except threading.BrokenBarrierError:
            if not ctl.dead.is_set():
                ctl.fail(f"session {self.sid}: barrier broken")
        except Exception:
            ctl.fail(f"session {self.sid}: {traceback.format_exc()}")

    def quiesce(self):
        """Stop outside a transaction, on a live connection, with no fault in flight."""
        self.set_state("protected")
        for _ in range(10):
            try:
                if self.kill_pending:
                    # the signal or the shutdown was delivered before this statement
                    self.q("SELECT 1")
                    self.ctl.report.check("disconnects", False,
                                          f"session {self.sid}: answers after a terminate/close")
                    self.kill_pending = False
                else:
                    self.q("SELECT 1")
                    self.ctl.report.check("disconnects", True)
                if self.in_txn or self.conn.info.transaction_status != pq.TransactionStatus.IDLE:
                    self.q(self.rng.choice(["COMMIT", "ROLLBACK"]))
                    self.model.xact.clear()
                    self.in_txn = False
                return
            except Lost as e:
                self.lost(e)
        raise RuntimeError(f"session {self.sid}: cannot reach a quiet state")

    def step(self):
        op = self.choose()
        if isinstance(op, str):
            self.txn_control(op)
        else:
            self.execute(op)

    # ---- choosing operations ----------------------------------------------------

    def choose(self):
        r = self.rng
        if self.in_txn:
            self.txn_left -= 1
            if self.txn_left < 0:
                return r.choice(["COMMIT", "COMMIT", "COMMIT", "ROLLBACK"])
        elif r.random() < 0.08:
            return "BEGIN"
        held = [k for k, n in self.model.session.items() if n > 0]
        total = self.model.session_holds()
        if held and r.random() < min(0.75, 0.1 + 0.12 * total):
            return self.unlock_op(held)
        if r.random() < 0.05:
            return self.unlock_op([])  # usually a lock not held: false + WARNING
        return self.acquire_op()

    def unlock_op(self, held):
        r = self.rng
        if held and r.random() < 0.9:
            tag, mode = r.choice(held)
            t = self.ctl.by_tag[tag]
        else:
            t = r.choice(self.ctl.targets)
            mode = SHARE if r.random() < 0.3 else EXCL
        if t.kind == "bigint" and mode == EXCL and r.random() < 0.25:
            others = r.sample(self.ctl.bigint, r.randint(0, 2))
            arr = [t] + others + ([t] if r.random() < 0.3 else [])
            r.shuffle(arr)
            return self.many_op("unlock_many", arr, "int", "release", "session", "forever")
        sh = "_shared" if mode == SHARE else ""
        if r.random() < 0.1:
            return Op(f"pg_advisory_unlock{sh}", f"pg_advisory_unlock{sh}({t.builtin_args})",
                      "bool", "release", [t], mode, named=False)
        return Op(f"unlock_{t.family}{sh}", f"unlock_{t.family}{sh}({t.args})", "bool", "release", [t], mode)

    def many_op(self, fn, arr, ret, action, scope, wait, timeout=None):
        # the server folds duplicates and works in ascending (signed) key order
        distinct = sorted(set(arr), key=lambda t: key64(t.name))
        a = "ARRAY[" + ", ".join(lit(t.name) for t in arr) + "]::text[]"
        call = f"{fn}({a}, '{timeout}'::interval)" if timeout else f"{fn}({a})"
        kind = fn + ("(timeout)" if timeout else "")
        return Op(kind, call, ret, action, distinct, EXCL, scope, wait)

    def acquire_op(self):
        r = self.rng
        xact = (self.in_txn and r.random() < 0.5) or (not self.in_txn and r.random() < 0.08)
        scope = "xact" if xact else "session"
        xp = "xact_" if xact else ""
        wait = r.choices(["forever", "no", "timed"], [35, 30, 35])[0]
        timeout = None
        if wait == "timed":
            timeout = r.choice(["0", "10ms", "50ms", "150ms", "400ms"])
            if timeout == "0":
                wait = "timed0"  # a try, counted as a try failure
        if r.random() < 0.15:
            arr = r.sample(self.ctl.bigint, r.randint(1, 3))
            if r.random() < 0.3:
                arr.append(arr[0])
            r.shuffle(arr)
            if wait == "forever":
                return self.many_op(f"{xp}lock_many", arr, "void", "acquire", scope, wait)
            if wait == "no":
                return self.many_op(f"try_{xp}lock_many", arr, "bool", "acquire", scope, wait)
            return self.many_op(f"{xp}lock_many", arr, "bool", "acquire", scope, wait, timeout)
        t = r.choice(self.ctl.targets)
        mode = SHARE if r.random() < 0.35 else EXCL
        sh = "_shared" if mode == SHARE else ""
        if wait == "no" and r.random() < 0.15:
            # the built-in on the same tag: the model must not care who took the lock
            fn = f"pg_try_advisory_{xp}lock{sh}"
            return Op(fn, f"{fn}({t.builtin_args})", "bool", "acquire", [t], mode, scope, wait, named=False)
        if wait == "forever":
            fn = f"{xp}lock_{t.family}{sh}"
            return Op(fn, f"{fn}({t.args})", "void", "acquire", [t], mode, scope, wait)
        if wait == "no":
            fn = f"try_{xp}lock_{t.family}{sh}"
            return Op(fn, f"{fn}({t.args})", "bool", "acquire", [t], mode, scope, wait)
        fn = f"{xp}lock_{t.family}{sh}"
        return Op(fn + "(timeout)", f"{fn}({t.args}, '{timeout}'::interval)", "bool", "acquire",
                  [t], mode, scope, wait)

    # ---- running operations -----------------------------------------------------

    def settle_txn(self):
        """After an error: roll back an aborted transaction block (a ROLLBACK can be
        cancelled too); transaction locks are gone once the block is over."""
        for _ in range(20):
            st = self.conn.info.transaction_status
            if st != pq.TransactionStatus.INERROR:
                break
            try:
                self.conn.execute("ROLLBACK")
            except psycopg.Error as e:
                if self.is_lost(e):
                    raise Lost(e) from e
                self.errors[e.sqlstate] += 1
        st = self.conn.info.transaction_status
        if st == pq.TransactionStatus.IDLE:
            self.in_txn = False
            self.model.xact.clear()
        elif st == pq.TransactionStatus.INERROR:
            raise RuntimeError(f"session {self.sid}: ROLLBACK keeps failing")

    def txn_control(self, cmd):
        self.ops[cmd] += 1
        try:
            self.conn.execute(cmd)
        except psycopg.Error as e:
            if self.is_lost(e):
                raise Lost(e) from e
            self.errors[e.sqlstate] += 1
            self.ctl.report.check("call_outcome", e.sqlstate == "57014",
                                  f"session {self.sid}: {cmd} raised {e.sqlstate}: {e}")
        if cmd == "BEGIN" and self.conn.info.transaction_status == pq.TransactionStatus.INTRANS:
            self.in_txn = True
            self.txn_left = self.rng.randint(1, 6)
        self.settle_txn()

    def execute(self, op, final=False):
        rep = self.ctl.report
        m = self.model
        who = f"session {self.sid} (pid {self.pid})"
        self.ops[op.kind] += 1
        in_txn = self.in_txn
        if op.action == "acquire":
            all_held = all(m.holds(t.tag, op.mode) for t in op.targets)
            if op.named:
                self.attempted.update(t.reg for t in op.targets)
        else:
            held = [m.session[(t.tag, op.mode)] > 0 for t in op.targets]

        self.notices = []
        err = None
        try:
            self.conn.execute(op.sql)
        except psycopg.Error as e:
            err = e
        markers, dont_own, other = [], [], []
        for sev, msg in self.notices:
            if mk := MARKER_RE.match(msg):
                markers.append(int(mk.group(1)))
            elif mk := DONT_OWN_RE.match(msg):
                dont_own.append(mk.group(1))
            else:
                other.append(f"{sev}: {msg}")
        lost = err is not None and self.is_lost(err)
        if err is not None:
            self.errors[err.sqlstate or "connection lost"] += 1
        completed = bool(markers)
        if completed and err is not None:
            self.late += 1  # the statement failed after the call had returned
        result = Op.decode(markers[-1], op.ret) if completed else None
        rep.check("call_outcome", len(markers) <= 1 and (not completed or result is not None),
                  f"{who}: {op.call}: markers {markers}")
        rep.check("warnings", not other, f"{who}: {op.call}: unexpected {other}")

        if op.named and op.action == "acquire":
            if completed:
                self.completed.update(t.reg for t in op.targets)
                if result is True:
                    for t in op.targets:
                        self.obs_acq[t.reg] += 1
                elif op.wait in ("no", "timed0"):
                    self.obs_tryfail += 1
                else:
                    self.obs_timeouts += 1
            elif lost:
                for t in op.targets:
                    self.amb_acq[t.reg] += 1
                self.amb_fail += 1

        mode_name = op.mode
        if completed and result is not None:
            if op.action == "acquire":
                if op.wait == "forever":
                    rep.check("call_outcome", result is True, f"{who}: {op.call} returned {result}")
                elif all_held:
                    rep.check("reentrant_try", result is True,
                              f"{who}: {op.call} returned {result} while the session holds it")
                rep.check("warnings", not dont_own, f"{who}: {op.call}: unexpected unlock warnings {dont_own}")
                if result is True:
                    for t in op.targets:
                        if op.scope == "session":
                            m.session[(t.tag, op.mode)] += 1
                        elif in_txn:
                            m.xact.add((t.tag, op.mode))
            else:
                want = sum(held)
                got = int(result) if op.ret == "bool" else result
                inv = "final_counts" if final else "unlock_result"
                rep.check(inv, got == want, f"{who}: {op.call} returned {result}, model expects {want} "
                                            f"(holds {[m.session[(t.tag, op.mode)] for t in op.targets]})")
                rep.check("warnings", dont_own == [mode_name] * (len(held) - want),
                          f"{who}: {op.call}: warnings {dont_own}, expected {len(held) - want}")
                for t, h in zip(op.targets, held, strict=False):
                    if h:
                        m.session[(t.tag, op.mode)] -= 1
                m.prune()
        elif not lost:
            allowed = {"57014"}
            if op.action == "acquire" and op.wait == "forever":
                allowed |= {"55P03", "40P01"}
            if op.action == "acquire" and op.wait == "timed":
                allowed |= {"40P01"}
            rep.check("call_outcome", err is not None and err.sqlstate in allowed,
                      f"{who}: {op.call}: no result, error {getattr(err, 'sqlstate', None)}: {err}")
            if op.action == "release" and len(op.targets) > 1:
                # A cancel can only land inside unlock_many at the interrupt check after
                # a "you don't own" WARNING: the names up to the k-th one not held were
                # processed, the rest were not.
                k = len(dont_own)
                if k:
                    seen = 0
                    for t, h in zip(op.targets, held, strict=False):
                        if h:
                            m.session[(t.tag, op.mode)] -= 1
                        else:
                            seen += 1
                            if seen == k:
                                break
                    m.prune()
            # an acquire that raised holds nothing new: checked against pg_locks later
        if lost:
            raise Lost(err)
        if err is not None:
            self.settle_txn()

    def final_release(self):
        """Unlock every session hold one by one: exactly N unlocks succeed, the next fails."""
        try:
            for (tag, mode), n in sorted(self.model.session.items()):
                t = self.ctl.by_tag[tag]
                sh = "_shared" if mode == SHARE else ""
                for i in range(n + 1):
                    if t.kind == "bigint" and mode == EXCL and i % 2:
                        op = self.many_op("unlock_many", [t], "int", "release", "session", "forever")
                    else:
                        op = Op(f"unlock_{t.family}{sh}", f"unlock_{t.family}{sh}({t.args})", "bool",
                                "release", [t], mode)
                    want_held = i < n
                    self.ctl.report.check("final_counts", (self.model.session[(tag, mode)] > 0) == want_held)
                    self.execute(op, final=True)
            self.ctl.report.check("final_counts", not self.model.expected_locks(),
                                  f"session {self.sid}: model not empty after the final unlocks")
        except Lost as e:
            self.ctl.report.check("disconnects", False, f"session {self.sid}: lost during the final unlocks: {e}")


class Controller:
    def __init__(self, args):
        self.args = args
        self.dsn_base = f"host={args.host} port={args.port} user={args.user} connect_timeout=10"
        self.dsn = f"{self.dsn_base} dbname={DB}"
        self.report = Report()
        self.think = args.think_ms / 1000.0
        self.bigint, pairs, ids = pool()
        self.targets = self.bigint + pairs + ids
        self.by_tag = {t.tag: t for t in self.targets}
        assert len(self.by_tag) == len(self.targets), "two pool targets share a lock tag"
        n = args.sessions
        self.pause = threading.Event()
        self.dead = threading.Event()  # something failed: everybody stops
        self.finishing = False
        self.pause_barrier = threading.Barrier(n + 1)
        self.resume_barrier = threading.Barrier(n + 1)
        self.done_barrier = threading.Barrier(n + 1)
        self.chaos_stop = threading.Event()
        self.faults = Counter()
        self.dead_pids = set()
        self.dead_lock = threading.Lock()
        self.quiesces = 0
        self.sessions = [Session(self, i, args.seed * 1000 + i) for i in range(n)]

    def fail(self, msg):
        print(f"FATAL: {msg}", flush=True)
        self.report.fatal.append(msg)
        self.dead.set()
        for b in (self.pause_barrier, self.resume_barrier, self.done_barrier):
            b.abort()

    def note_dead(self, pid):
        if pid:
            with self.dead_lock:
                self.dead_pids.add(pid)

    def connect(self, dbname=DB):
        return psycopg.connect(f"{self.dsn_base} dbname={dbname}", autocommit=True, prepare_threshold=None,
                               application_name="soak-controller")

    # ---- chaos --------------------------------------------------------------------

    def chaos(self):
        rng = random.Random(self.args.seed ^ 0xC4A05)
        conn = self.connect()
        conn.execute("SET statement_timeout = '10s'")
        while not self.chaos_stop.is_set() and not self.dead.is_set():
            time.sleep(rng.uniform(0.04, 0.2))
            if self.pause.is_set():
                continue
            r = rng.random()
            action = "cancel" if r < 0.8 else "terminate" if r < 0.9 else "close"
            cands = [s for s in self.sessions if s.state == "op" and s.pid]
            if action == "cancel" and cands and rng.random() < 0.6:
                # aim at lock waits: the cancel then lands inside the wait
                waiting = {p for (p,) in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid = ANY(%s)",
                    [[s.pid for s in cands]]).fetchall()}
                cands = [s for s in cands if s.pid in waiting] or cands
            if not cands:
                continue
            s = rng.choice(cands)
            with s.mutex:
                if s.state != "op" or s.pid is None or self.pause.is_set():
                    continue
                if action == "cancel":
                    ok = conn.execute("SELECT pg_cancel_backend(%s)", [s.pid]).fetchone()[0]
                elif action == "terminate":
                    ok = conn.execute("SELECT pg_terminate_backend(%s)", [s.pid]).fetchone()[0]
                    s.kill_pending = s.kill_pending or ok
                else:
                    try:
                        s.sock.shutdown(socket.SHUT_RDWR)
                        ok = True
                    except OSError:
                        ok = False  # already disconnected
                    s.kill_pending = s.kill_pending or ok
                if ok:
                    self.faults[action] += 1
        conn.close()

    def chaos_main(self):
        try:
            self.chaos()
        except Exception:
            self.fail(f"chaos: {traceback.format_exc()}")

    # ---- quiesce checks -------------------------------------------------------------

    def quiesce_and_check(self, final=False):
        self.pause.set()
        self.pause_barrier.wait(BARRIER_TIMEOUT)
        try:
            self.quiesces += 1
            self.check_all()
        finally:
            self.pause.clear()
            if final:
                self.finishing = True
            self.resume_barrier.wait(BARRIER_TIMEOUT)

    def wait_dead_gone(self, c):
        """Backends that were terminated or lost their client exit asynchronously; give
        them time, then any advisory lock they still have is a leak."""
        live = {s.pid for s in self.sessions}
        with self.dead_lock:
            dead = sorted(self.dead_pids - live)
        deadline = time.monotonic() + 15
        while dead:
            rows = c.execute(
                "SELECT pid FROM pg_stat_activity WHERE pid = ANY(%(p)s) "
                "UNION SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND pid = ANY(%(p)s)",
                {"p": dead}).fetchall()
            left = sorted(p for (p,) in rows)
            if not left or time.monotonic() > deadline:
                break
            dead = left
            time.sleep(0.05)
        with self.dead_lock:
            self.dead_pids = set()

    def check_all(self):
        rep = self.report
        c = self.ctl_conn
        self.wait_dead_gone(c)
        live = {s.pid: s for s in self.sessions}
        rows = c.execute(
            "SELECT pid, classid::int8, objid::int8, objsubid::int4, mode, granted, "
            "       database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "  FROM pg_locks WHERE locktype = 'advisory'").fetchall()
        waiting = [r for r in rows if not r[5]]
        rep.check("no_waiters", not waiting, f"waiting advisory locks at quiesce: {waiting}")
        orphans = [r for r in rows if r[0] not in live]
        rep.check("no_orphans", not orphans, f"advisory locks of pids that are no live session: {orphans}")
        other_db = [r for r in rows if not r[6]]
        rep.check("pg_locks_model", not other_db, f"advisory locks in another database: {other_db}")
        actual = defaultdict(set)
        for pid, classid, objid, objsubid, mode, granted, _ in rows:
            if granted:
                actual[pid].add(((classid, objid, objsubid), mode))
        for pid, s in live.items():
            want = s.model.expected_locks()
            got = actual.get(pid, set())
            rep.check("pg_locks_model", got == want,
                      f"session {s.sid} (pid {pid}): pg_locks - model = {self.show(got - want)}, "
                      f"model - pg_locks = {self.show(want - got)}")

        # advisory_locks_v: the same rows as pg_locks, each with the name it was taken by
        vrows = c.execute(
            "SELECT pid, lock_name, key_kind, lock_key, key1, key2, mode, granted, "
            "       database = current_database() FROM advisory_locks_v").fetchall()
        completed = set().union(*(s.completed for s in self.sessions))
        attempted = set().union(*(s.attempted for s in self.sessions))
        vset = set()
        for pid, name, kind, key, k1, k2, mode, granted, same_db in vrows:
            if kind == "bigint":
                tag = ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF, 1)
            else:
                tag = (k1 & 0xFFFFFFFF, k2 & 0xFFFFFFFF, 2)
            lmode = {"exclusive": EXCL, "shared": SHARE}.get(mode, mode)
            vset.add((pid, tag, lmode, granted))
            t = self.by_tag.get(tag)
            # a lock taken only with the built-ins is named once some named call
            # registered its name (or namespace), and not before
            if t is None:
                want = ["a pool lock"]
            elif t.reg in completed:
                want = [t.label]
            elif t.reg in attempted:
                want = [t.label, None]
            else:
                want = [None]
            rep.check("view_names", t is not None and name in want and same_db,
                      f"advisory_locks_v row {(pid, name, kind, key, k1, k2, mode)}: expected {want}")
        pset = {(r[0], (r[1], r[2], r[3]), r[4], r[5]) for r in rows}
        rep.check("view_matches", vset == pset,
                  f"advisory_locks_v - pg_locks = {vset - pset}, pg_locks - advisory_locks_v = {pset - vset}")

        # named_lock_holders: pids holding the bigint lock of a name, in either mode
        names = [t.name for t in self.bigint]
        got = dict(c.execute("SELECT n, named_lock_holders(n) FROM unnest(%s::text[]) n", [names]).fetchall())
        for t in self.bigint:
            want = sorted(pid for pid, s in live.items()
                          if any(tg == t.tag for tg, _ in s.model.expected_locks()))
            rep.check("holders", sorted(got[t.name]) == want,
                      f"named_lock_holders({t.name!r}) = {got[t.name]}, models say {want}")

        self.check_registry(c)

    def show(self, locks):
        return sorted((self.by_tag[t].label if t in self.by_tag else t, m) for t, m in locks)

    def check_registry(self, c):
        rep = self.report
        attempted, completed = set(), set()
        obs_acq, amb_acq = Counter(), Counter()
        obs_try = obs_tmo = amb = 0
        for s in self.sessions:
            attempted |= s.attempted
            completed |= s.completed
            obs_acq.update(s.obs_acq)
            amb_acq.update(s.amb_acq)
            obs_try += s.obs_tryfail
            obs_tmo += s.obs_timeouts
            amb += s.amb_fail

        storage, capacity, names, not_stored, evictions, collisions = c.execute(
            "SELECT storage, capacity, names, not_stored, evictions, collisions "
            "FROM named_lock_registry_info()").fetchone()
        rep.check("registry", storage == "shared_preload_libraries" and capacity == 10000
                  and len(completed) <= names - self.base_names <= len(attempted)
                  and not_stored == 0 and evictions == 0 and collisions == 0,
                  f"registry_info: storage={storage} capacity={capacity} names={names} "
                  f"(expected {self.base_names} + {len(completed)}..{len(attempted)}) not_stored={not_stored} "
                  f"evictions={evictions} collisions={collisions}")

        # every name a completed call registered: key contract and reverse lookup
        done = [t for t in self.targets if t.reg in completed]
        for t in done:
            if t.kind == "bigint":
                k, k32, back = c.execute("SELECT named_lock_key(%s), named_lock_key32(%s), "
                                         "named_lock_name(named_lock_key(%s))", [t.name] * 3).fetchone()
                ok = k == key64(t.name) and k32 == key32(t.name) and back == t.name
                got = (k, k32, back)
            elif t.kind == "pair":
                back = c.execute("SELECT named_lock_name(named_lock_key32(%s), named_lock_key32(%s))",
                                 [t.ns, t.name]).fetchone()[0]
                ok, got = back == t.label, back
            else:
                back = c.execute("SELECT named_lock_name(named_lock_key32(%s), %s::int)",
                                 [t.ns, t.id]).fetchone()[0]
                ok, got = back == t.label, back
            rep.check("lookups", ok, f"lookups for {t.label!r}: got {got}")

        stats = {(r[1], r[0]): r for r in c.execute(
            "SELECT lock_name, key_kind, acquisitions, immediate_acquisitions, waits, total_wait_ms, "
            "       max_wait_ms, try_failures, timeouts, last_acquired FROM named_lock_stats").fetchall()}
        unknown = set(stats) - attempted - self.base_stats
        rep.check("stats", not unknown, f"named_lock_stats rows for names never used: {unknown}")
        tot_try = tot_tmo = 0
        for reg in sorted(attempted):
            row = stats.get(reg)
            if row is None:
                rep.check("stats", reg not in completed, f"no named_lock_stats row for {reg}")
                continue
            _, _, acq, imm, waits, total_ms, max_ms, tryf, tmo, last = row
            tot_try += tryf
            tot_tmo += tmo
            lo, hi = obs_acq[reg], obs_acq[reg] + amb_acq[reg]
            rep.check("stats", lo <= acq <= hi and acq == imm + waits and min(imm, waits, tryf, tmo) >= 0
                      and 0 <= max_ms <= total_ms + 1e-6 and (waits > 0 or total_ms == 0)
                      and (last is not None) == (acq > 0),
                      f"named_lock_stats {reg}: acquisitions={acq} (observed {lo}..{hi}) immediate={imm} "
                      f"waits={waits} total_ms={total_ms} max_ms={max_ms} try_failures={tryf} "
                      f"timeouts={tmo} last={last}")
        rep.check("stats", obs_try <= tot_try <= obs_try + amb,
                  f"try_failures total {tot_try}, observed {obs_try} (+{amb} unknown)")
        rep.check("stats", obs_tmo <= tot_tmo <= obs_tmo + amb,
                  f"timeouts total {tot_tmo}, observed {obs_tmo} (+{amb} unknown)")
        self.last_stats = stats

    def final_checks(self):
        rep = self.report
        c = self.ctl_conn
        self.wait_dead_gone(c)
        n = c.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()[0]
        rep.check("final_empty", n == 0, f"{n} advisory locks in pg_locks after the final unlocks")
        n = c.execute("SELECT count(*) FROM advisory_locks_v").fetchone()[0]
        rep.check("final_empty", n == 0, f"{n} rows in advisory_locks_v after the final unlocks")
        busy = c.execute("SELECT n FROM unnest(%s::text[]) n WHERE named_lock_holders(n) <> '{}'",
                         [[t.name for t in self.bigint]]).fetchall()
        rep.check("final_empty", not busy, f"named_lock_holders not empty for {busy}")
        self.check_registry(c)

    def exercised(self):
        """A soak that never waited, timed out or had a fault land tested little."""
        rep = self.report
        if self.args.seconds < 20:
            rep.check("exercised", True)
            return
        errors = self.errors()
        waits = sum(r[4] for r in self.last_stats.values())
        tmo = sum(r[8] for r in self.last_stats.values())
        reconnects = sum(s.reconnects for s in self.sessions)
        for ok, what in [
            (self.operations() >= 50 * self.args.sessions, f"{self.operations()} operations"),
            (waits > 0, f"{waits} waits in named_lock_stats"),
            (tmo > 0, f"{tmo} per-call timeouts in named_lock_stats"),
            (errors["55P03"] > 0, f"{errors['55P03']} lock_timeout errors"),
            (self.faults["cancel"] > 0 and errors["57014"] > 0,
             f"{self.faults['cancel']} cancels sent, {errors['57014']} landed"),
            (self.faults["terminate"] + self.faults["close"] == 0 or reconnects > 0, f"{reconnects} reconnects"),
            (self.quiesces >= 2, f"{self.quiesces} quiesce points"),
        ]:
            rep.check("exercised", ok, f"too little happened: {what}")

    def operations(self):
        return sum(sum(s.ops.values()) for s in self.sessions)

    def errors(self):
        e = Counter()
        for s in self.sessions:
            e.update(s.errors)
        return e

    # ---- the run --------------------------------------------------------------------

    def setup(self):
        with self.connect("postgres") as c:
            c.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
            c.execute(f"CREATE DATABASE {DB}")
        self.ctl_conn = self.connect()
        self.ctl_conn.execute("CREATE EXTENSION pg_named_locks")
        self.ctl_conn.execute("SET statement_timeout = '30s'")
        # The registry is cluster-wide: names another database registered before the run
        # are the baseline (the shell script starts a fresh server, where it is empty).
        self.base_names = self.ctl_conn.execute("SELECT names FROM named_lock_registry_info()").fetchone()[0]
        self.base_stats = {(k, n) for n, k in self.ctl_conn.execute(
            "SELECT lock_name, key_kind FROM named_lock_stats").fetchall()}
        clash = self.base_stats & {t.reg for t in self.targets}
        if clash:
            raise RuntimeError(f"the server already knows soak names {clash}: use a fresh server")

    def run(self):
        a = self.args
        self.setup()
        start = time.monotonic()
        for s in self.sessions:
            s.start()
        chaos = threading.Thread(target=self.chaos_main, name="chaos", daemon=True)
        if a.chaos:
            chaos.start()
        end = start + a.seconds
        next_check = start + a.check_every
        try:
            while time.monotonic() < end and not self.dead.is_set():
                time.sleep(max(0.0, min(next_check, end) - time.monotonic()))
                if time.monotonic() >= next_check and time.monotonic() < end - 1:
                    self.quiesce_and_check()
                    next_check = time.monotonic() + a.check_every
            self.chaos_stop.set()
            if a.chaos:
                chaos.join(15)
            if not self.dead.is_set():
                self.quiesce_and_check(final=True)
                self.done_barrier.wait(BARRIER_TIMEOUT)
                self.final_checks()
                self.exercised()
        except threading.BrokenBarrierError:
            self.fail("controller: barrier broken (a session did not reach the quiesce point)")
        for s in self.sessions:
            s.join(5)
        self.elapsed = time.monotonic() - start

    def summary(self):
        rep = self.report
        faults = sum(self.faults.values())
        ops = Counter()
        for s in self.sessions:
            ops.update(s.ops)
        return {
            "seed": self.args.seed,
            "seconds": self.args.seconds,
            "sessions": self.args.sessions,
            "elapsed": round(getattr(self, "elapsed", 0), 1),
            "operations": sum(ops.values()),
            "operations_by_kind": dict(sorted(ops.items(), key=lambda kv: -kv[1])),
            "errors_by_sqlstate": dict(sorted(self.errors().items(), key=lambda kv: -kv[1])),
            "faults": dict(self.faults),
            "reconnects": sum(s.reconnects for s in self.sessions),
            "late_failures": sum(s.late for s in self.sessions),
            "quiesce_points": self.quiesces,
            "invariants": {
                k: {"description": d, "checks": rep.checks[k], "violations": len(rep.violations[k]),
                    "examples": rep.violations[k][:5]}
                for k, d in INVARIANTS.items()
            },
            "invariant_checks": sum(rep.checks.values()),
            "fatal": rep.fatal,
            "line": f"soak: {sum(ops.values())} operations, {faults} injected faults, "
                    f"{rep.n_violations()} invariant violations",
        }


def print_summary(s):
    print(f"operations by kind ({s['operations']}):")
    for k, n in s["operations_by_kind"].items():
        print(f"  {n:8d}  {k}")
    print("errors by SQLSTATE: " + ", ".join(f"{k}: {n}" for k, n in s["errors_by_sqlstate"].items()))
    print("faults injected: " + ", ".join(f"{k}: {n}" for k, n in s["faults"].items())
          + f"; reconnects: {s['reconnects']}; statements that failed after their call returned: "
          f"{s['late_failures']}")
    print(f"invariant checks: {s['invariant_checks']} at {s['quiesce_points']} quiesce points "
          f"(+ per call); elapsed {s['elapsed']} s")
    for k, v in s["invariants"].items():
        print(f"  {v['checks']:8d} checks, {v['violations']} violations: {k}")
        for ex in v["examples"]:
            print(f"      e.g. {ex}")
    for f in s["fatal"]:
        print(f"FATAL: {f}")
    print(s["line"], flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", default="postgres")
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--sessions", type=int, default=16)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--check-every", type=float, default=8, help="seconds between quiesce checks")
    p.add_argument("--think-ms", type=float, default=3, help="max random pause between a session's calls")
    p.add_argument("--no-chaos", dest="chaos", action="store_false")
    p.add_argument("--report", help="write the summary as JSON here")
    a = p.parse_args()
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1 << 31)
    print(f"soak: seed {a.seed}, {a.sessions} sessions, {a.seconds:g} s", flush=True)

    ctl = Controller(a)

    def write(s):
        if a.report:
            with open(a.report + ".tmp", "w") as f:
                json.dump(s, f, indent=1, default=str)
            os.replace(a.report + ".tmp", a.report)

    def watchdog():
        time.sleep(a.seconds + WATCHDOG_GRACE)
        ctl.report.fatal.append(f"watchdog: still running {WATCHDOG_GRACE} s after the end")
        s = ctl.summary()
        write(s)
        print_summary(s)
        os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()
    try:
        ctl.run()
    except Exception:
        ctl.fail(f"controller: {traceback.format_exc()}")
    s = ctl.summary()
    write(s)
    print_summary(s)
    sys.exit(0 if not s["fatal"] and ctl.report.n_violations() == 0 else 1)


if __name__ == "__main__":
    main()
