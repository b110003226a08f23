#!/usr/bin/env python3
"""Markdown table and SVG chart from one benchmark result (the JSON bench.py writes).

Also usable on its own, to re-render an earlier result:
    python3 bench/lib/report.py bench/results/<stem>.json   # writes <stem>.md and <stem>.svg
"""
import json
import math
import os
import statistics
import sys
from html import escape

# ---------------------------------------------------------------------------------------
# Targets (from the issue): ratios measured in one run.
# ---------------------------------------------------------------------------------------


def _ratio(a, b):
    if a is None or b is None or b <= 0 or a < 0:
        return None
    return a / b


def median_ratio(xs, ys):
    """The median of xs[i] / ys[i] over the repetitions i (None when there is none): the
    two runs of a repetition ran next to each other, so drifts of the machine cancel."""
    ratios = [r for r in (_ratio(a, b) for a, b in zip(xs, ys, strict=False)) if r is not None]
    return statistics.median(ratios) if ratios else None


def paired_ratio(d, mode, clients, cid, base):
    """pgbench: contender/base tps, per repetition (see median_ratio)."""
    runs = d["pgbench"]["tps"][mode][str(clients)]
    return median_ratio(runs[cid], runs[base])


def paired_ns_ratio(phase, cid, base):
    """In-server: contender/base net ns, per repetition (see median_ratio)."""
    c = phase["contenders"]
    return median_ratio(c[cid]["net_ns"], c[base]["net_ns"])


def targets(d):
    out = []

    def add(what, ratio, op, limit, detail):
        ok = None if ratio is None else (ratio <= limit if op == "<=" else ratio >= limit)
        out.append(dict(what=what, ratio=ratio, op=op, limit=limit, ok=ok, detail=detail))

    rp, nw = d["in_server_repeated"], d["in_server_never_seen"]
    rep, new = rp["contenders"], nw["contenders"]
    ns = lambda r, c: r[c]["median_ns"]  # noqa: E731
    add("In-server, repeated names: lock_named+unlock_named vs built-in pair on precomputed keys",
        paired_ns_ratio(rp, "lock_named", "builtin"), "<=", 1.5,
        f"{fmt_ns(ns(rep, 'lock_named'))} vs {fmt_ns(ns(rep, 'builtin'))} ns/pair")
    add("In-server, repeated names: lock_named+unlock_named vs SQL md5 idiom",
        paired_ns_ratio(rp, "lock_named", "md5_idiom"), "<=", 0.5,
        f"{fmt_ns(ns(rep, 'lock_named'))} vs {fmt_ns(ns(rep, 'md5_idiom'))} ns/pair")
    add("In-server, never-seen names: lock_named+unlock_named vs built-in",
        paired_ns_ratio(nw, "lock_named", "builtin"), "<=", 3.0,
        f"{fmt_ns(ns(new, 'lock_named'))} vs {fmt_ns(ns(new, 'builtin'))} ns/pair")
    add("In-server, repeated names: lock_named_fenced+unlock_named vs lock_named+unlock_named",
        paired_ns_ratio(rp, "lock_named_fenced", "lock_named"), "<=", 1.2,
        f"{fmt_ns(ns(rep, 'lock_named_fenced'))} vs {fmt_ns(ns(rep, 'lock_named'))} ns/pair")
    tps = d["pgbench"]["median_tps"]
    for mode, c in (("uncontended", "1"), ("contended", "8")):
        what = ("pgbench uncontended (a name per client)" if mode == "uncontended"
                else "pgbench contended (one hot name)")
        add(f"{what}, {c} client{'s' if c != '1' else ''}: lock_named_fenced tps vs lock_named",
            paired_ratio(d, mode, c, "lock_named_fenced", "lock_named"), ">=", 0.97,
            f"{fmt_tps(tps[mode][c]['lock_named_fenced'])} vs {fmt_tps(tps[mode][c]['lock_named'])} tps")
    for mode, c, limit in (("uncontended", "1", 0.97), ("uncontended", "2", 0.97), ("contended", "8", 0.95)):
        a, b = tps[mode][c]["lock_named"], tps[mode][c]["builtin"]
        what = ("pgbench uncontended (a name per client)" if mode == "uncontended"
                else "pgbench contended (one hot name)")
        add(f"{what}, {c} client{'s' if c != '1' else ''}: lock_named tps vs built-in",
            paired_ratio(d, mode, c, "lock_named", "builtin"), ">=", limit,
            f"{fmt_tps(a)} vs {fmt_tps(b)} tps")
    q = d["monitoring"]["queries"]
    n = d["monitoring"]["locks"]
    for view, plain, how in (("view_count", "locks_count", "count(*)"),
                             ("view_rows", "locks_rows", "all columns")):
        add(f"advisory_locks_v vs plain pg_locks query, {n:,} locks, {how}",
            _ratio(q[view]["median_ms"], q[plain]["median_ms"]), "<=", 2.0,
            f"{q[view]['median_ms']:.2f} vs {q[plain]['median_ms']:.2f} ms")
    return out


# ---------------------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------------------
def fmt_ns(v):
    if v is None:
        return "n/a"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}"


def fmt_tps(v):
    return "n/a" if v is None else f"{v:,.0f}"


def plural(n, word):
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def spread_note(samples):
    """(max - min) / median over the repetitions of each pgbench run: median and worst."""
    sp = []
    for c, per in samples.items():
        for cid, v in per.items():
            if len(v) > 1 and sorted(v)[len(v) // 2] > 0:
                sp.append(((max(v) - min(v)) / sorted(v)[len(v) // 2] * 100, cid, c))
    if not sp:
        return ""
    sp.sort()
    worst = sp[-1]
    return (f"Spread over the repetitions, (max − min) / median: median {sp[len(sp) // 2][0]:.0f}%, "
            f"worst {worst[0]:.0f}% ({worst[1]}, {worst[2]} client{'s' if worst[2] != '1' else ''}).\n\n")


def fmt_ratio(v):
    return "n/a" if v is None else f"{v:.2f}x"


def table(head, rows, align=None):
    align = align or ["l"] + ["r"] * (len(head) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def by_id(d):
    return {c["id"]: c for c in d["contenders"]}


def in_server_section(d, key, title, intro):
    r = d[key]
    cs = by_id(d)
    rows = []
    for cid, v in r["contenders"].items():
        c = cs[cid]
        lo, hi = min(v["net_ns"]), max(v["net_ns"])
        rows.append([
            c["label"], fmt_ns(v["median_ns"]), f"{fmt_ns(lo)} – {fmt_ns(hi)}",
            fmt_ratio(paired_ns_ratio(r, cid, "builtin")),
            fmt_ratio(paired_ns_ratio(r, cid, c["base"])) if c["base"] != "builtin" else "",
        ])
    s = f"## {title}\n\n{intro}\n\n"
    s += table(["contender", "ns/pair, median", "min – max", "× built-in pair",
                "× same-kind built-in"], rows)
    s += (f"\nEmpty loop (`{'length(name) > 0'}`, same statement without locks): "
          f"{fmt_ns(r['empty_median_ns'])} ns per row, subtracted from every sample "
          f"(paired by repetition). {plural(len(r['empty_ms']), 'repetition')}. Ratios (×) are "
          "the median, over the repetitions, of the ratio within a repetition; in a repetition "
          "each extension contender runs right next to its built-in base (which one goes first "
          "alternates), so drifts of the machine's speed cancel.\n\n")
    return s


def pgbench_section(d, chart):
    pb = d["pgbench"]
    s = "## 3. Round trips: pgbench\n\n"
    p = d["params"]
    how = (f"`-T {p['duration']}`" if p.get("duration") else f"`-t {p['transactions']}` per client")
    s += (f"`pgbench -n -M prepared`, {how}, {plural(p['pgbench_reps'], 'repetition')}, median tps. "
          "Clients/threads: " + ", ".join(f"`-c {c} -j {j}`" for c, j in zip(pb["clients"], pb["jobs"], strict=False))
          + ". A transaction is the lock and the unlock as two statements (try: the unlock only when "
          "the try succeeded; xact: one autocommit statement, released at its commit). "
          "Ratios (×) are to the built-in of the same kind on the precomputed key: the median, "
          "over the repetitions, of the ratio within a repetition (a repetition runs every "
          "contender once, each extension contender right next to its built-in base, which one "
          "goes first alternating), so drifts of the machine's speed cancel.\n\n")
    for mode, title in (("uncontended", "Uncontended: a name per client (`bench-1` … `bench-8`)"),
                        ("contended", "Contended: every client on one hot name (`bench-0`)")):
        s += f"### {title}\n\n"
        rows = []
        for c in d["contenders"]:
            row = [c["label"]]
            for n in pb["clients"]:
                v = pb["median_tps"][mode][str(n)][c["id"]]
                row += [fmt_tps(v), fmt_ratio(paired_ratio(d, mode, n, c["id"], c["base"]))]
            rows.append(row)
        head = ["contender"]
        for n in pb["clients"]:
            head += [f"{n} client{'s' if n > 1 else ''}, tps", "×"]
        s += table(head, rows) + "\n"
        s += spread_note(pb["tps"][mode])
    s += ("Contended try: tps counts attempts, successful or not (a failed try is a short "
              "transaction), so compare try rows only with each other.\n\n")
    s += f"![throughput against clients]({chart})\n\n"
    return s


def monitoring_section(d):
    m = d["monitoring"]
    q = m["queries"]
    s = "## 4. Monitoring\n\n"
    s += (f"{m['holders']} sessions hold {m['locks_per_holder']:,} named locks each "
          f"({m['locks']:,} advisory locks; {m.get('registry_names', 0):,} names in the registry). "
          f"Timed inside the server (parse, plan, execute), median of {len(q['view_count']['ms'])}. "
          "\"all columns\" turns every row into text, as a client fetching `SELECT *` would "
          "(count(*) lets the planner skip unused columns).\n\n")
    base = {"locks_count": "locks_count", "view_count": "locks_count", "locks_rows": "locks_rows",
            "view_rows": "locks_rows", "stats_count": "locks_count", "stats_rows": "locks_rows"}
    rows = []
    for key, v in q.items():
        rows.append([f"`{v['sql']}`", f"{v['rows']:,}", f"{v['median_ms']:.2f}",
                     f"{min(v['ms']):.2f} – {max(v['ms']):.2f}",
                     fmt_ratio(_ratio(v["median_ms"], q[base[key]]["median_ms"]))])
    s += table(["query", "rows", "ms, median", "min – max", "× plain pg_locks query"], rows)
    return s + "\n"


def memory_section(d):
    m = d["registry_memory"]
    a = d.get("registry_after", {})
    s = "## 5. Registry memory\n\n"
    s += table(["shared memory allocation", "storage", "capacity (names)", "bytes", "bytes per name"],
               [["`pg_named_locks registry` (pg_shmem_allocations.allocated_size)", m["storage"],
                 f"{m['capacity']:,}", f"{m['allocated_size']:,}", f"{m['bytes_per_name']:.1f}"]])
    if a:
        s += (f"\nRegistry at the end of the run: {a['names']:,} names of {a['capacity']:,}, "
              f"{a['evictions']:,} evictions, {a['not_stored']:,} not stored, "
              f"{a['collisions']:,} collisions.\n")
    return s + "\n"


def markdown(d, chart, tlist=None):
    tlist = targets(d) if tlist is None else tlist
    mach, b, st, p = d["machine"], d["build"], d["settings"], d["params"]
    s = (f"# pg_named_locks benchmark: PostgreSQL {st['server_version']}, {b['profile']} build, "
         f"{d['started'].replace('T', ' ')}\n\n")
    if d["smoke"]:
        s += ("> **Smoke run** (`bench/run.sh --smoke`): tiny sizes to exercise the code paths. "
              "The numbers mean nothing; the target verdicts are shown only to test the report.\n\n")
    busy = d["machine"]["cpu_busy_before_pct"]
    if busy > 15 and not d["smoke"]:
        s += (f"> **Warning: the machine was not idle** (CPU {busy}% busy just before the run, "
              f"{d['machine']['nproc']} CPUs). Other work competes with the server and pgbench; "
              "expect noisy numbers, and rerun on a quiet machine before trusting a ratio near "
              "its limit.\n\n")
    rt = d.get("round_trip_check")
    if rt and rt["ratio"] < 0.5:
        s += (f"> **Warning: cross-CPU round trips are slow on this machine.** `SELECT 1` at one "
              f"client: {fmt_tps(max(rt['configured']))} tps as configured, "
              f"{fmt_tps(max(rt['one_cpu']))} tps with client and server on one CPU "
              f"({rt['ratio']:.2f}x). Waking an idle CPU (typical of virtual machines) then "
              "dominates every round trip that leaves a CPU idle: 1-client and contended pgbench "
              "numbers mostly measure that and jump between repetitions, so their ratios say "
              "little about the contenders. Rerun with `--pin 0` (server and clients on one "
              "CPU) to compare CPU cost per round trip instead; see bench/README.md.\n\n")
    dirty = (f" + uncommitted changes in {', '.join(b['uncommitted'])}" if b["uncommitted"] else "")
    s += table(["", ""], [
        ["date", f"{d['started']} – {d['finished']} (UTC); measuring took {d['seconds'] / 60:.1f} min, "
                 f"the build {b['build_seconds']} s"],
        ["machine", f"{mach['nproc']} CPUs (nproc), {mach['cpu_model']}, "
                    f"{(mach['mem_mib'] or 0) / 1024:.1f} GiB RAM, Linux {mach['kernel']}"],
        ["background load", f"CPU {mach['cpu_busy_before_pct']}% busy in the second before the run; "
                            f"load average {mach['loadavg_start']:.2f} at the start, "
                            f"{mach['loadavg_end']:.2f} at the end"],
        ["CPUs used", "all" if not p.get("pin") else
                      f"{', '.join(map(str, p['pin']))} only (`--pin`: the server and every client)"],
        ["round-trip check", "not measured" if not rt else
                             f"`SELECT 1`, 1 client: {fmt_tps(max(rt['configured']))} tps as configured, "
                             f"{fmt_tps(max(rt['one_cpu']))} tps with client and server on CPU {rt['one'][0]} "
                             f"({rt['ratio']:.2f}x; below 0.5x cross-CPU wake-ups dominate round trips)"],
        ["PostgreSQL", st["version"]],
        ["extension", f"pg_named_locks {st.get('extversion', '?')}, {b['profile']} build, commit {b['commit']}"
                      f"{dirty}; pg_named_locks.so sha256 {b['so_sha256']}"],
        ["server settings", "; ".join(f"`{line}`" for line in d["conf"])
            + f"; in effect: track_stats {st.get('pg_named_locks.track_stats')}, "
              f"max_names {st.get('pg_named_locks.max_names')}, "
              f"max_locks_per_session {st.get('pg_named_locks.max_locks_per_session')}"],
        ["sizes", f"in-server {p['pairs']:,} pairs (repeated) and {p['never_seen']:,} names (never seen), "
                  f"{plural(p['reps'], 'repetition')} each after a warm-up; pgbench "
                  + (f"{p['duration']} s" if p.get("duration") else f"{p['transactions']} transactions per client")
                  + f" × {plural(p['pgbench_reps'], 'repetition')}; "
                  f"monitoring {p['holders']} × {p['locks_per_holder']:,} locks, "
                  f"{plural(p['mon_reps'], 'repetition')}"],
        ["phases", ", ".join(f"{k} {v} s" for k, v in d.get("phase_seconds", {}).items())],
    ], ["l", "l"])
    s += "\n## Targets\n\n"
    rows = []
    for t in tlist:
        verdict = "n/a" if t["ok"] is None else ("PASS" if t["ok"] else "**FAIL**")
        rows.append([t["what"], fmt_ratio(t["ratio"]), f"{t['op']} {t['limit']:g}x", verdict, t["detail"]])
    s += table(["target", "measured", "limit", "result", "medians"], rows, ["l", "r", "l", "l", "r"])
    s += "\n"
    s += in_server_section(
        d, "in_server_repeated", "1. In-server cost, repeated names",
        f"One statement performs {p['pairs']:,} lock+unlock pairs over 1,000 names (`job-1` … "
        "`job-1000`) cycled: `SELECT count(*) FROM loop, LATERAL (SELECT name, k FROM names "
        "WHERE g > 0 OFFSET 0) n WHERE <per row>` (the OFFSET 0 barrier keeps the per-row "
        "predicate running once per pair; the plan is checked). `k` is the name's key, "
        "precomputed in the table. Timed inside the server (`bench_time()`: clock_timestamp() "
        "around EXECUTE), same session for every contender, interleaved order, median net "
        "ns per pair (time minus the empty loop, divided by the pairs).")
    s += in_server_section(
        d, "in_server_never_seen", "2. In-server cost, never-seen names",
        f"One pass over {p['never_seen']:,} names that nobody used before: every contender and "
        "repetition gets its own freshly generated table (`new-<rep>-<contender>-<i>`, same "
        "length for all; keys precomputed with the SQL idiom, never through the extension), "
        "so the extension's per-backend cache and its shared registry have never seen them. "
        f"With `max_names = {st.get('pg_named_locks.max_names')}` the registry is full after "
        "the first few thousand names, so this includes evicting old names.")
    s += ("Transaction locks (`xact_lock_named`) have no in-server row: they are released only at "
          "commit, so one statement cannot do a million lock+release pairs; they are measured with "
          "pgbench below.\n\n")
    s += pgbench_section(d, chart)
    s += monitoring_section(d)
    s += memory_section(d)
    s += "## What each contender runs\n\n"
    s += ("In-server statements (section 1 and 2), the predicate per row, one lock+unlock pair; "
          "every predicate is true when both calls ran, and the runner checks that count(*) "
          "equals the number of pairs:\n\n")
    s += table(["contender", "per row"],
               [[c["label"], f"`{c['pair']}`"] for c in d["contenders"] if c["pair"]]
               + [["empty loop (subtracted)", "`length(name) > 0`"]], ["l", "l"]) + "\n"
    s += ("pgbench scripts (`bench/pgbench/`): the same prologue is prepended to every script, so "
          "each contender does the same client-side work; `:k` is the precomputed key of the "
          "name `'bench-' || :id`, and `:name` that name, fetched once per client and then passed "
          "as a bind parameter.\n\n```\n" + d["pgbench"]["prologue"].strip() + "\n```\n\n")
    for c in d["contenders"]:
        s += (f"**{c['label']}** (`bench/pgbench/{c['id']}.sql`)\n\n"
              f"```sql\n{d['pgbench']['bodies'][c['id']].strip()}\n```\n\n")
    s += ("The PL/pgSQL wrapper (`bench/sql/setup.sql`):\n\n```sql\n"
          "CREATE FUNCTION bench_plpgsql_lock(name text) RETURNS void LANGUAGE plpgsql AS $$\nBEGIN\n"
          "    PERFORM pg_advisory_lock(('x' || substr(md5(name), 1, 16))::bit(64)::bigint);\nEND $$;\n"
          "-- bench_plpgsql_unlock: the same around pg_advisory_unlock, RETURNS boolean\n```\n")
    return s


# ---------------------------------------------------------------------------------------
# SVG chart: tps against clients, one line per contender, uncontended and contended panels
# ---------------------------------------------------------------------------------------
STYLE = {
    "builtin": ("#000000", ""), "md5_idiom": ("#d95f02", ""), "plpgsql": ("#7570b3", ""),
    "hashtext": ("#999999", ""), "lock_named": ("#1f78b4", ""), "lock_named_fenced": ("#33a02c", ""),
    "builtin_try": ("#000000", "7,4"), "try_lock_named": ("#1f78b4", "7,4"),
    "builtin_xact": ("#000000", "2,3"), "xact_lock_named": ("#1f78b4", "2,3"),
}


def nice_max(v):
    if v <= 0:
        return 1.0, 0.2
    raw = v / 6
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return step * math.ceil(v / step), step


def fmt_axis(v):
    if v >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


def svg_chart(d):
    pb = d["pgbench"]
    clients = pb["clients"]
    cs = d["contenders"]
    W, H = 1000, 590
    top, ph, pw, left0, gap = 90, 330, 400, 80, 110
    legend_y = top + ph + 64
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           'font-family="Helvetica, Arial, sans-serif" font-size="13">',
           f'<rect width="{W}" height="{H}" fill="white"/>']
    st, b = d["settings"], d["build"]
    title = (f"pg_named_locks: throughput against clients (pgbench -M prepared), PostgreSQL "
             f"{st['server_version']}, {b['profile']} build")
    pin = d["params"].get("pin")
    sub = (f"{d['machine']['nproc']} CPUs, {d['machine']['cpu_model']}, {d['started'][:10]}"
           + (f"; server and clients pinned to CPU {','.join(map(str, pin))}" if pin else "")
           + ("  —  SMOKE RUN, numbers meaningless" if d["smoke"] else ""))
    out.append(f'<text x="{W / 2}" y="26" text-anchor="middle" font-size="16" font-weight="bold">'
               f'{escape(title)}</text>')
    out.append(f'<text x="{W / 2}" y="46" text-anchor="middle" fill="#555">{escape(sub)}</text>')
    for pi, (mode, ptitle) in enumerate((("uncontended", "uncontended: a name per client"),
                                         ("contended", "contended: one hot name"))):
        x0 = left0 + pi * (pw + gap)
        vals = [pb["median_tps"][mode][str(c)][k["id"]] for c in clients for k in cs]
        ymax, step = nice_max(max(vals) * 1.05)
        # this panel's x0 and ymax, bound now (B023; both are only called within this iteration)
        X = lambda i, x0=x0: x0 + 30 + i * (pw - 60) / (len(clients) - 1)  # noqa: E731
        Y = lambda v, ymax=ymax: top + ph - v / ymax * ph  # noqa: E731
        out.append(f'<text x="{x0 + pw / 2}" y="{top - 10}" text-anchor="middle" font-weight="bold">{ptitle}</text>')
        out.append(f'<rect x="{x0}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
        t = 0.0
        while t <= ymax + 1e-9:
            y = Y(t)
            out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + pw}" y2="{y:.1f}" stroke="#e4e4e4"/>')
            out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#333">{fmt_axis(t)}</text>')
            t += step
        for i, c in enumerate(clients):
            out.append(f'<text x="{X(i):.1f}" y="{top + ph + 18}" text-anchor="middle">{c}</text>')
        out.append(f'<text x="{x0 + pw / 2}" y="{top + ph + 38}" text-anchor="middle" fill="#333">clients</text>')
        out.append(f'<text transform="translate({x0 - 52},{top + ph / 2}) rotate(-90)" text-anchor="middle" '
                   'fill="#333">transactions per second</text>')
        for k in cs:
            color, dash = STYLE.get(k["id"], ("#444", ""))
            width = 3 if k["id"] in ("lock_named", "builtin") else 2
            pts = [(X(i), Y(pb["median_tps"][mode][str(c)][k["id"]])) for i, c in enumerate(clients)]
            da = f' stroke-dasharray="{dash}"' if dash else ""
            out.append(f'<polyline points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in pts)}" fill="none" '
                       f'stroke="{color}" stroke-width="{width}"{da}><title>{escape(k["label"])}</title></polyline>')
            for x, y in pts:
                out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}"/>')
    # Legend: a column per family (built-ins, this extension, the SQL idioms).
    columns = [["builtin", "builtin_try", "builtin_xact"],
               ["lock_named", "try_lock_named", "xact_lock_named", "lock_named_fenced"],
               ["md5_idiom", "plpgsql", "hashtext"]]
    place = {cid: (ci, ri) for ci, col in enumerate(columns) for ri, cid in enumerate(col)}
    for i, k in enumerate(cs):
        color, dash = STYLE.get(k["id"], ("#444", ""))
        ci, ri = place.get(k["id"], (i % 3, 3 + i // 3))
        lx = 110 + ci * 300
        ly = legend_y + ri * 24
        da = f' stroke-dasharray="{dash}"' if dash else ""
        width = 3 if k["id"] in ("lock_named", "builtin") else 2
        out.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 36}" y2="{ly}" stroke="{color}" stroke-width="{width}"{da}/>')
        out.append(f'<circle cx="{lx + 18}" cy="{ly}" r="3.5" fill="{color}"/>')
        out.append(f'<text x="{lx + 44}" y="{ly + 4}">{escape(k["short"])}</text>')
    out.append(f'<text x="{W / 2}" y="{H - 12}" text-anchor="middle" fill="#555" font-size="11">'
               "median tps; a transaction = lock + unlock (two statements), try: unlock only when taken, "
               "xact: one statement released at commit</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    path = sys.argv[1]
    with open(path) as f:
        data = json.load(f)
    stem = os.path.splitext(path)[0]
    with open(stem + ".svg", "w") as f:
        f.write(svg_chart(data))
    with open(stem + ".md", "w") as f:
        f.write(markdown(data, os.path.basename(stem) + ".svg"))
    print(f"wrote {stem}.md and {stem}.svg")
