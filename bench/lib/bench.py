#!/usr/bin/env python3
"""Measurements for bench/run.sh (which builds, starts the server and calls this).

Drives psql and pgbench against the benchmark server, collects every sample into one
JSON document and hands it to report.py for the markdown table and the SVG chart.
Standard library only.
"""
import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import report  # noqa: E402

# ---------------------------------------------------------------------------------------
# Contenders. `base` is the built-in of the same kind (session pair, try, transaction);
# `ours` marks this extension's contenders (each runs next to its base, see paired_order);
# `pair` is the per-row predicate of the in-server statements (None: not measured there).
# Every predicate is true when the pair ran, so count(*) checks that every row did it.
# ---------------------------------------------------------------------------------------
MD5 = "('x'||substr(md5(name),1,16))::bit(64)::bigint"
CONTENDERS = [
    dict(id="builtin", base="builtin", label="1. built-in on a precomputed key",
         short="built-in, precomputed key",
         sql="pg_advisory_lock(key); pg_advisory_unlock(key)",
         pair="pg_advisory_lock(k) IS NOT NULL AND pg_advisory_unlock(k)"),
    dict(id="md5_idiom", base="builtin", label="2. SQL md5 idiom", short="SQL md5 idiom",
         sql="pg_advisory_lock(('x'||substr(md5(name),1,16))::bit(64)::bigint); pg_advisory_unlock(same)",
         pair=f"pg_advisory_lock({MD5}) IS NOT NULL AND pg_advisory_unlock({MD5})"),
    dict(id="plpgsql", base="builtin", label="3. PL/pgSQL wrapper (md5 idiom)", short="PL/pgSQL wrapper",
         sql="bench_plpgsql_lock(name); bench_plpgsql_unlock(name)",
         pair="bench_plpgsql_lock(name) IS NOT NULL AND bench_plpgsql_unlock(name)"),
    dict(id="hashtext", base="builtin", label="4. hashtext idiom (32-bit)", short="hashtext idiom (32-bit)",
         sql="pg_advisory_lock(hashtext(name)); pg_advisory_unlock(hashtext(name))",
         pair="pg_advisory_lock(hashtext(name)) IS NOT NULL AND pg_advisory_unlock(hashtext(name))"),
    dict(id="lock_named", ours=True, base="builtin", label="5. lock_named + unlock_named", short="lock_named",
         sql="lock_named(name); unlock_named(name)",
         pair="lock_named(name) IS NOT NULL AND unlock_named(name)"),
    dict(id="lock_named_fenced", ours=True, base="builtin", label="5. lock_named_fenced + unlock_named",
         short="lock_named_fenced",
         sql="lock_named_fenced(name); unlock_named(name)",
         pair="lock_named_fenced(name) IS NOT NULL AND unlock_named(name)"),
    dict(id="builtin_try", base="builtin_try", label="built-in try on a precomputed key",
         short="built-in try, precomputed key",
         sql="pg_try_advisory_lock(key); pg_advisory_unlock(key) when taken",
         pair="pg_try_advisory_lock(k) AND pg_advisory_unlock(k)"),
    dict(id="try_lock_named", ours=True, base="builtin_try", label="5. try_lock_named + unlock_named",
         short="try_lock_named",
         sql="try_lock_named(name); unlock_named(name) when taken",
         pair="try_lock_named(name) AND unlock_named(name)"),
    dict(id="builtin_xact", base="builtin_xact", label="built-in xact lock on a precomputed key",
         short="built-in xact, precomputed key",
         sql="pg_advisory_xact_lock(key), released at commit", pair=None),
    dict(id="xact_lock_named", ours=True, base="builtin_xact", label="5. xact_lock_named", short="xact_lock_named",
         sql="xact_lock_named(name), released at commit", pair=None),
]
EMPTY_PRED = "length(name) > 0"
IN_SERVER = [c for c in CONTENDERS if c["pair"]]
CLIENTS = [(1, 1), (2, 2), (8, 2)]        # (-c, -j)
MODES = [("uncontended", 0), ("contended", 1)]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def rotate(seq, n):
    n %= len(seq)
    return seq[n:] + seq[:n]


def paired_order(ids, n):
    """The order of one repetition: every extension contender right next to its built-in
    base, so that the ratio a target is judged on compares two runs seconds apart, not up
    to a whole repetition apart (the machine's speed drifts by several percent within
    that). Which of the two goes first alternates with `n` (so an even number of
    repetitions cancels any advantage of going first or second); the blocks rotate by `n`,
    and contenders without a partner (the empty loop, the idioms) are blocks of one."""
    blocks, placed = [], set()
    for cid in ids:
        if cid in placed:
            continue
        partner = next((x["id"] for x in CONTENDERS if x.get("ours") and x["base"] == cid
                        and x["id"] in ids and x["id"] not in placed), None)
        block = [cid] + ([partner] if partner else [])
        placed.update(block)
        blocks.append(block if n % 2 == 0 else block[::-1])
    return [cid for block in rotate(blocks, n) for cid in block]


def parse_cpus(spec):
    """'0', '0,2' or '0-3' -> a set of CPU numbers."""
    cpus = set()
    for part in spec.split(","):
        a, _, b = part.partition("-")
        cpus.update(range(int(a), int(b or a) + 1))
    return cpus


def median(xs):
    xs = sorted(xs)
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m]) / 2


class Server:
    """psql and pgbench against the benchmark server (unix socket only)."""

    def __init__(self, args):
        self.bindir, self.host, self.port, self.work = args.bindir, args.host, args.port, args.work
        self.conn = ["-h", self.host, "-p", str(self.port), "-U", "postgres"]
        self.children = []
        self.datadir = args.datadir
        self.all_cpus = sorted(os.sched_getaffinity(0))
        self.cpus = parse_cpus(args.pin) if args.pin else self.all_cpus   # clients and server
        self.client_cpus = self.cpus

    def _preexec(self):
        cpus = self.client_cpus
        return lambda: os.sched_setaffinity(0, cpus)

    def pin_server(self, cpus):
        """CPU affinity of the postmaster and its children; new backends inherit it."""
        with open(os.path.join(self.datadir, "postmaster.pid")) as f:
            pm = int(f.readline())
        pids = [pm]
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        if int(f.read().rsplit(")", 1)[1].split()[1]) == pm:
                            pids.append(int(d))
                except (OSError, ValueError, IndexError):
                    pass
        for pid in pids:
            try:
                os.sched_setaffinity(pid, cpus)
            except OSError:
                pass

    def psql_cmd(self, db="bench"):
        return [os.path.join(self.bindir, "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                *self.conn, "-d", db]

    def script(self, name, sql, timeout, db="bench", variables=()):
        """Run `sql` in one session; return the rows of lines starting with 'R|'."""
        path = os.path.join(self.work, f"{name}.sql")
        with open(path, "w") as f:
            f.write(sql)
        cmd = self.psql_cmd(db) + [a for k, v in variables for a in ("-v", f"{k}={v}")] + ["-f", path]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                               preexec_fn=self._preexec())
        except subprocess.TimeoutExpired:
            raise SystemExit(f"psql {name}: no answer within {timeout} s") from None
        with open(os.path.join(self.work, f"{name}.out"), "w") as f:
            f.write(p.stdout + ("\n--- stderr ---\n" + p.stderr if p.stderr else ""))
        if p.returncode != 0:
            raise SystemExit(f"psql {name} failed (rc {p.returncode}):\n{p.stderr[-3000:]}")
        return [line.split("|")[1:] for line in p.stdout.splitlines() if line.startswith("R|")]

    def query(self, name, sql, timeout=120, db="bench"):
        return self.script(name, sql, timeout, db)

    def pgbench(self, script, clients, jobs, hot, keys, duration, transactions, logname):
        cmd = [os.path.join(self.bindir, "pgbench"), *self.conn, "-n", "-M", "prepared",
               "-c", str(clients), "-j", str(jobs), "-D", f"hot={hot}", "-D", "have_name=0"]
        cmd += [a for i, k in enumerate(keys) for a in ("-D", f"k{i}={k}")]
        cmd += ["-t", str(transactions)] if transactions else ["-T", str(duration)]
        cmd += ["-f", script, "bench"]
        timeout = (duration or 0) + 120
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                               preexec_fn=self._preexec())
        except subprocess.TimeoutExpired:
            raise SystemExit(f"pgbench {logname}: did not finish within {timeout} s") from None
        out = p.stdout + p.stderr
        with open(os.path.join(self.work, "pgbench", logname + ".log"), "w") as f:
            f.write(" ".join(cmd) + "\n\n" + out)
        tps = re.search(r"^tps = ([0-9.]+) \(without initial connection time\)", out, re.M)
        failed = re.search(r"^number of failed transactions: (\d+)", out, re.M)
        done = re.search(r"^number of transactions actually processed: (\d+)", out, re.M)
        lat = re.search(r"^latency average = ([0-9.]+) ms", out, re.M)
        if p.returncode != 0 or not tps or (failed and int(failed.group(1))):
            raise SystemExit(f"pgbench {logname} failed (rc {p.returncode}):\n{out[-3000:]}")
        return dict(tps=float(tps.group(1)), transactions=int(done.group(1)) if done else None,
                    latency_ms=float(lat.group(1)) if lat else None)

    def spawn_holder(self, name, sql):
        """A background session that runs `sql` and then stays connected until released."""
        err = open(os.path.join(self.work, f"{name}.err"), "w")
        p = subprocess.Popen(self.psql_cmd(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=err, text=True, start_new_session=True,
                             preexec_fn=self._preexec())
        self.children.append(p)
        p.stdin.write(sql + "\n")
        p.stdin.flush()
        return p

    def release_holders(self):
        for p in self.children:
            try:
                p.stdin.close()       # psql reads EOF, disconnects, the locks go with it
            except OSError:
                pass
        deadline = time.time() + 30
        for p in self.children:
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.children = []


# ---------------------------------------------------------------------------------------
# Context: machine, server, build
# ---------------------------------------------------------------------------------------
def cpu_busy_percent(seconds=1.0):
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]          # total, idle + iowait
    t0, i0 = snap()
    time.sleep(seconds)
    t1, i1 = snap()
    return round(100.0 * (1 - (i1 - i0) / max(1, t1 - t0)), 1)


def machine_info():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return dict(nproc=int(nproc) if nproc.isdigit() else os.cpu_count(), cpu_model=model,
                mem_mib=mem, kernel=platform.release(), hostname=platform.node(),
                loadavg_start=os.getloadavg()[0], cpu_busy_before_pct=cpu_busy_percent())


def build_info(root, bindir, profile, build_seconds):
    def git(*a):
        p = subprocess.run(["git", "-C", root, *a], capture_output=True, text=True)
        return p.stdout.strip() if p.returncode == 0 else ""
    # porcelain lines are "XY path"; git() strips the output, which would eat the first
    # line's leading space (X), so take the path after the first space instead
    changed = [line.strip().split(" ", 1)[1].strip() for line in
               git("status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock").splitlines() if line.strip()]
    pkglib = subprocess.run([os.path.join(bindir, "pg_config"), "--pkglibdir"], capture_output=True,
                            text=True).stdout.strip()
    so = os.path.join(pkglib, "pg_named_locks.so")
    digest = ""
    if os.path.exists(so):
        with open(so, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:16]
    return dict(profile=profile, commit=git("rev-parse", "--short", "HEAD"), uncommitted=changed,
                so_sha256=digest, build_seconds=build_seconds)


# ---------------------------------------------------------------------------------------
# Phases
# ---------------------------------------------------------------------------------------
def setup(srv, p):
    srv.query("createdb", "CREATE DATABASE bench;", db="postgres")
    with open(os.path.join(BENCH, "sql", "setup.sql")) as f:
        rows = srv.script("setup", f.read(), 300, variables=[("pairs", p["pairs"])])
    if rows != [["keys_agree", "t"]]:
        raise SystemExit(f"named_lock_key() and the md5 idiom disagree: {rows}")
    # The loop must run the predicate once per pair: no Materialize under the nested loop,
    # and the filter on the Subquery Scan above the OFFSET 0 barrier.
    srv.script("explain", "EXPLAIN (COSTS OFF) " + repeated_stmt(IN_SERVER[0]["pair"]) + ";\n", 60)
    with open(os.path.join(srv.work, "explain.out")) as f:
        out = f.read()
    if "Materialize" in out or "Subquery Scan" not in out or "One-Time Filter" not in out:
        raise SystemExit(f"unexpected plan for the in-server loop:\n{out}")
    rows = srv.query("info", """
        SELECT 'R', 'version', version();
        SELECT 'R', 'server_version', current_setting('server_version');
        SELECT 'R', 'server_version_num', current_setting('server_version_num');
        SELECT 'R', 'extversion', extversion FROM pg_extension WHERE extname = 'pg_named_locks';
        SELECT 'R', name, setting || coalesce(unit, '') FROM pg_settings
         WHERE name IN ('pg_named_locks.max_names', 'pg_named_locks.track_stats',
                        'pg_named_locks.max_locks_per_session', 'max_locks_per_transaction',
                        'shared_buffers', 'max_connections', 'jit', 'shared_preload_libraries',
                        'synchronous_commit', 'fsync')
         ORDER BY name;
    """)
    return {k: v for k, v in rows}, out.strip()


def repeated_stmt(pred):
    return ("SELECT count(*) FROM loop, LATERAL (SELECT name, k FROM names WHERE g > 0 OFFSET 0) n "
            f"WHERE {pred}")


def timed(tag, stmt):
    return f"SELECT 'R', '{tag}', ms, n FROM bench_time($q${stmt}$q$);\n"


def in_server_repeated(srv, p):
    """1,000 names cycled: one statement of p['pairs'] lock+unlock pairs per contender."""
    items = [("empty", EMPTY_PRED)] + [(c["id"], c["pair"]) for c in IN_SERVER]
    preds = dict(items)
    sql = "-- warm-up: every contender once (fills the extension's caches and the registry)\n"
    sql += "".join(timed(f"warmup:{cid}", repeated_stmt(pred)) for cid, pred in items)
    for rep in range(1, p["reps"] + 1):
        sql += f"-- repetition {rep}\n"
        sql += "".join(timed(f"{rep}:{cid}", repeated_stmt(preds[cid]))
                       for cid in paired_order(list(preds), rep - 1))
    sql += ("SELECT 'R', 'left_held', count(*), 0 FROM pg_locks "
            "WHERE locktype = 'advisory' AND pid = pg_backend_pid();\n")
    rows = srv.script("inserver_repeated", sql, 3600)
    return collect_in_server(rows, p["pairs"], items)


def in_server_never_seen(srv, p):
    """A fresh table of never-seen names per contender and repetition (one pass each)."""
    items = [("empty", EMPTY_PRED)] + [(c["id"], c["pair"]) for c in IN_SERVER]
    preds = dict(items)
    n = p["never_seen"]

    def one(rep, idx, tag, pred, count):
        # Same-length names for every contender; keys precomputed with the SQL idiom,
        # never through the extension, so its caches never saw them.
        return (f"-- {tag}\n"
                f"CREATE UNLOGGED TABLE ns AS SELECT name, bench_key(name) AS k FROM "
                f"(SELECT format('new-%s-%s-%s', lpad('{rep}', 2, '0'), lpad('{idx}', 2, '0'), "
                f"lpad(i::text, 7, '0')) AS name FROM generate_series(1, {count}) i) s;\n"
                f"SELECT count(*) FROM ns;\n"
                + timed(tag, f"SELECT count(*) FROM ns WHERE {pred}")
                + "DROP TABLE ns;\n")
    sql = "".join(one(0, i, f"warmup:{cid}", pred, p["never_seen_warmup"]) for i, (cid, pred) in enumerate(items))
    for rep in range(1, p["reps"] + 1):
        idx = {cid: i for i, (cid, _) in enumerate(items)}
        sql += "".join(one(rep, idx[cid], f"{rep}:{cid}", preds[cid], n)
                       for cid in paired_order(list(preds), rep - 1))
    sql += ("SELECT 'R', 'left_held', count(*), 0 FROM pg_locks "
            "WHERE locktype = 'advisory' AND pid = pg_backend_pid();\n")
    rows = srv.script("inserver_never_seen", sql, 7200)
    return collect_in_server(rows, n, items)


def collect_in_server(rows, pairs, items):
    samples = {cid: [] for cid, _ in items}
    left = None
    for tag, ms, cnt in rows:
        if tag == "left_held":
            left = int(ms)
            continue
        if int(cnt) != pairs and not tag.startswith("warmup:"):
            raise SystemExit(f"{tag}: the statement did {cnt} pairs, expected {pairs}")
        rep, cid = tag.split(":")
        if rep != "warmup":
            samples[cid].append(float(ms))
    if left:
        raise SystemExit(f"{left} advisory locks left held after the in-server loops")
    empty = samples["empty"]
    out = dict(pairs=pairs, empty_ms=empty, contenders={})
    for cid, _ in items[1:]:
        ms = samples[cid]
        net_ns = [(m - e) * 1e6 / pairs for m, e in zip(ms, empty, strict=False)]
        out["contenders"][cid] = dict(ms=ms, net_ns=net_ns, median_ns=median(net_ns),
                                      median_ms=median(ms))
    out["empty_median_ns"] = median(empty) * 1e6 / pairs
    return out


def monitoring(srv, p):
    holders, per = p["holders"], p["locks_per_holder"]
    total = holders * per
    log(f"monitoring: {holders} sessions take {per} locks each")
    for s in range(1, holders + 1):
        srv.spawn_holder(f"holder{s}", f"SET application_name = 'bench-holder-{s}';\n"
                         f"SELECT bool_and(try_lock_named(format('mon-%s-%s', {s}, i))) "
                         f"FROM generate_series(1, {per}) i;")
    try:
        deadline = time.time() + 120
        while True:
            held = int(srv.query("held", "SELECT 'R', count(*) FROM pg_locks "
                                         "WHERE locktype = 'advisory' AND granted;")[0][0])
            if held >= total:
                break
            dead = [c for c in srv.children if c.poll() is not None]
            if dead or time.time() > deadline:
                raise SystemExit(f"monitoring: only {held} of {total} locks held "
                                 f"(holder logs: {srv.work}/holder*.err)")
            time.sleep(0.2)
        queries = [
            ("locks_count", "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"),
            ("view_count", "SELECT count(*) FROM advisory_locks_v"),
            ("locks_rows", "SELECT count(*), sum(length(l::text)) FROM pg_locks l WHERE locktype = 'advisory'"),
            ("view_rows", "SELECT count(*), sum(length(v::text)) FROM advisory_locks_v v"),
            ("stats_count", "SELECT count(*) FROM named_lock_stats"),
            ("stats_rows", "SELECT count(*), sum(length(s::text)) FROM named_lock_stats s"),
        ]
        sql = "".join(timed(f"warmup:{q}", stmt) for q, stmt in queries)
        for rep in range(1, p["mon_reps"] + 1):
            sql += "".join(timed(f"{rep}:{q}", stmt) for q, stmt in rotate(queries, rep - 1))
        sql += "SELECT 'R', 'registry', names, evictions FROM named_lock_registry_info();\n"
        rows = srv.script("monitoring", sql, 1800)
    finally:
        srv.release_holders()
    out = dict(holders=holders, locks_per_holder=per, locks=total,
               queries={q: dict(sql=stmt, ms=[], rows=None) for q, stmt in queries})
    for tag, ms, n in rows:
        if tag == "registry":
            out["registry_names"] = int(ms)
            continue
        rep, q = tag.split(":")
        out["queries"][q]["rows"] = int(n)
        if rep != "warmup":
            out["queries"][q]["ms"].append(float(ms))
    for q in out["queries"].values():
        q["median_ms"] = median(q["ms"])
    for q in ("locks_count", "view_count", "locks_rows", "view_rows"):
        if out["queries"][q]["rows"] != total:
            raise SystemExit(f"monitoring: {q} saw {out['queries'][q]['rows']} rows, expected {total}")
    return out


def registry_memory(srv):
    rows = srv.query("registry_memory", """
        SELECT 'R', a.size, a.allocated_size, i.capacity, i.storage
          FROM pg_shmem_allocations a, named_lock_registry_info() i
         WHERE a.name = 'pg_named_locks registry';""")
    if not rows:
        raise SystemExit("no 'pg_named_locks registry' in pg_shmem_allocations (not preloaded?)")
    size, alloc, cap, storage = rows[0]
    return dict(size=int(size), allocated_size=int(alloc), capacity=int(cap), storage=storage,
                bytes_per_name=int(alloc) / int(cap))


def registry_state(srv):
    rows = srv.query("registry_state", "SELECT 'R', capacity, names, not_stored, evictions, collisions "
                     "FROM named_lock_registry_info();")
    cap, names, ns, ev, col = (int(x) for x in rows[0])
    return dict(capacity=cap, names=names, not_stored=ns, evictions=ev, collisions=col)


def round_trip_check(srv, p):
    """`SELECT 1` at one client, as configured and with client and server on one CPU.

    On some virtual machines waking an idle CPU costs tens of microseconds, which then
    dominates every round trip when client and server sit on different CPUs (1 client,
    or clients waiting for a lock): 1-client tps collapses and jumps between runs. The
    ratio of the two numbers shows whether that happens here.
    """
    script = os.path.join(srv.work, "pgbench", "select1.sql")
    with open(script, "w") as f:
        f.write("SELECT 1;\n")
    one = {min(srv.cpus)}
    out = dict(configured=[], one_cpu=[], cpus=sorted(srv.cpus), one=sorted(one))
    for i in range(2):
        out["configured"].append(srv.pgbench(script, 1, 1, 0, [], p["check_seconds"], p["check_tx"],
                                             f"check-{i}-configured")["tps"])
        srv.pin_server(one)
        srv.client_cpus = one
        try:
            out["one_cpu"].append(srv.pgbench(script, 1, 1, 0, [], p["check_seconds"], p["check_tx"],
                                              f"check-{i}-one-cpu")["tps"])
        finally:
            srv.client_cpus = srv.cpus
            srv.pin_server(srv.cpus)
    out["ratio"] = max(out["configured"]) / max(out["one_cpu"])
    return out


def pgbench_phase(srv, p):
    keys = [k for _, k in srv.query("keys", "SELECT 'R', i, bench_key('bench-' || i) "
                                            "FROM generate_series(0, 8) i ORDER BY i;")]
    sdir = os.path.join(srv.work, "pgbench")
    os.makedirs(sdir, exist_ok=True)
    with open(os.path.join(BENCH, "pgbench", "_prologue.pgbench")) as f:
        prologue = f.read()
    scripts, bodies = {}, {}
    for c in CONTENDERS:
        with open(os.path.join(BENCH, "pgbench", c["id"] + ".sql")) as f:
            bodies[c["id"]] = f.read()
        scripts[c["id"]] = os.path.join(sdir, c["id"] + ".sql")
        with open(scripts[c["id"]], "w") as f:
            f.write(prologue + "\n" + bodies[c["id"]])
    ids = [c["id"] for c in CONTENDERS]
    res = {mode: {str(c): {cid: [] for cid in ids} for c, _ in CLIENTS} for mode, _ in MODES}
    runs = p["pgbench_reps"] * len(MODES) * len(CLIENTS) * len(ids)
    done = 0
    for rep in range(1, p["pgbench_reps"] + 1):
        for mi, (mode, hot) in enumerate(MODES):
            for ci, (c, j) in enumerate(CLIENTS):
                for cid in paired_order(ids, rep - 1 + mi * len(CLIENTS) + ci):
                    r = srv.pgbench(scripts[cid], c, j, hot, keys, p["duration"], p["transactions"],
                                    f"{rep}-{mode}-c{c}-{cid}")
                    res[mode][str(c)][cid].append(r["tps"])
                    done += 1
                log(f"pgbench rep {rep} {mode} {c} client(s): {done}/{runs} runs done")
    medians = {mode: {c: {cid: median(v) for cid, v in per.items()} for c, per in byc.items()}
               for mode, byc in res.items()}
    return dict(tps=res, median_tps=medians, keys=keys, prologue=prologue, bodies=bodies,
                clients=[c for c, _ in CLIENTS], jobs=[j for _, j in CLIENTS])


# ---------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--bindir", required=True)
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--profile", required=True)
    ap.add_argument("--build-seconds", type=int, default=0)
    ap.add_argument("--conf", default="")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--check-targets", action="store_true")
    ap.add_argument("--datadir", required=True)
    ap.add_argument("--pin", default="")
    ap.add_argument("--duration", type=int)
    ap.add_argument("--reps", type=int)
    ap.add_argument("--pgbench-reps", type=int)
    ap.add_argument("--pairs", type=int)
    ap.add_argument("--never-seen", type=int)
    ap.add_argument("--holders", type=int)
    ap.add_argument("--locks-per-holder", type=int)
    args = ap.parse_args()

    if args.smoke:
        p = dict(pairs=2000, never_seen=2000, never_seen_warmup=200, reps=2, pgbench_reps=1,
                 duration=None, transactions=100, holders=10, locks_per_holder=10, mon_reps=3,
                 check_seconds=None, check_tx=300)
    else:
        p = dict(pairs=1_000_000, never_seen=1_000_000, never_seen_warmup=10_000, reps=5,
                 pgbench_reps=3, duration=10, transactions=None, holders=10,
                 locks_per_holder=1000, mon_reps=7, check_seconds=2, check_tx=None)
    for k in ("duration", "reps", "pgbench_reps", "pairs", "never_seen", "holders", "locks_per_holder"):
        v = getattr(args, k)
        if v is not None:
            p[k] = v
            if k == "duration":
                p["transactions"] = None
    if p["pairs"] % 1000 or p["pairs"] <= 0:
        raise SystemExit("--pairs must be a positive multiple of 1000")
    p["never_seen_warmup"] = min(p["never_seen_warmup"], p["never_seen"])

    t_start = time.time()
    srv = Server(args)
    os.makedirs(os.path.join(args.work, "pgbench"), exist_ok=True)

    def on_signal(signum, _frame):
        log(f"received signal {signum}: stopping")
        srv.release_holders()
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)

    p["pin"] = sorted(srv.cpus) if args.pin else None
    if args.pin:
        if not srv.cpus <= set(srv.all_cpus):
            raise SystemExit(f"--pin {args.pin}: this process may use CPUs {srv.all_cpus} only")
        srv.pin_server(srv.cpus)
    data = dict(smoke=args.smoke, params=p, conf=[line for line in args.conf.splitlines() if line],
                started=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    try:
        log("machine and build info")
        data["machine"] = machine_info()
        data["build"] = build_info(args.root, args.bindir, args.profile, args.build_seconds)
        data["settings"], data["loop_plan"] = setup(srv, p)
        data["phase_seconds"] = {}

        def phase(name, fn, *a):
            log(f"{name} ...")
            t = time.time()
            data[name] = fn(*a)
            data["phase_seconds"][name] = round(time.time() - t, 1)
            log(f"{name}: {data['phase_seconds'][name]} s")

        phase("round_trip_check", round_trip_check, srv, p)
        phase("registry_memory", registry_memory, srv)
        phase("monitoring", monitoring, srv, p)
        phase("in_server_repeated", in_server_repeated, srv, p)
        phase("in_server_never_seen", in_server_never_seen, srv, p)
        phase("pgbench", pgbench_phase, srv, p)
        data["registry_after"] = registry_state(srv)
    finally:
        srv.release_holders()
    data["machine"]["loadavg_end"] = os.getloadavg()[0]
    data["contenders"] = CONTENDERS
    data["seconds"] = round(time.time() - t_start, 1)
    data["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

    # Files: <date>-pg<major>-<profile>[-smoke].{json,md,svg}, and latest.* copies.
    major = data["settings"]["server_version_num"][:2]
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
    stem = f"{stamp}-pg{major}-{args.profile}" + ("-smoke" if args.smoke else "")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, stem + ".json"), "w") as f:
        json.dump(data, f, indent=1)
    svg = report.svg_chart(data)
    targets = report.targets(data)
    for name, chart in ((stem, stem + ".svg"), ("latest", "latest.svg")):
        with open(os.path.join(args.out, name + ".svg"), "w") as f:
            f.write(svg)
        with open(os.path.join(args.out, name + ".md"), "w") as f:
            f.write(report.markdown(data, chart, targets))
    shutil.copyfile(os.path.join(args.out, stem + ".json"), os.path.join(args.out, "latest.json"))
    print(report.markdown(data, stem + ".svg", targets))
    log(f"written: {args.out}/{stem}.{{md,svg,json}} and latest.{{md,svg,json}}")
    failed = [t for t in targets if t["ok"] is False]
    if failed:
        log(f"{len(failed)} target(s) not met: " + "; ".join(t["what"] for t in failed))
        if args.check_targets:
            sys.exit(3)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
