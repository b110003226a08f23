"""Fenced grants and the trigger pattern, as the failover tests use them: many grants
through every fenced function (each checked while held and released), the protected
table whose BEFORE UPDATE trigger refuses a write under a stale token, the timeline; and
the steps of the story test_promote and test_patroni both tell, whatever promotes the
standby (last in this file)."""

import os

import psycopg

from cluster import PATIENCE, wait_until
from pgtest_util import one, sqlstate

COUNTER_BITS = 47
COUNTER_MASK = (1 << COUNTER_BITS) - 1
FENCE_FILE = "pg_named_locks.fence"
# The trigger's own SQLSTATE for "older than the row's last write" (a user-defined code).
STALE = "FN001"
# named_lock_assert's: the token's grant does not hold the lock (lock_not_available).
NOT_HELD = "55P03"

# (statement, scope) of every fenced grant function; grants() cycles through them.
FENCED = [
    ("SELECT lock_named_fenced(%s)", "session"),
    ("SELECT lock_named_fenced(%s, '10s')", "session"),
    ("SELECT try_lock_named_fenced(%s)", "session"),
    ("SELECT xact_lock_named_fenced(%s)", "xact"),
    ("SELECT xact_lock_named_fenced(%s, '10s')", "xact"),
    ("SELECT try_xact_lock_named_fenced(%s)", "xact"),
]

PROTECTED_DDL = [
    "CREATE EXTENSION IF NOT EXISTS pg_named_locks",
    "CREATE TABLE fenced_rows (id int PRIMARY KEY, lock_name text NOT NULL, fence bigint NOT NULL, payload text)",
    f"""CREATE FUNCTION fenced_rows_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.fence < OLD.fence THEN
            RAISE EXCEPTION 'stale fencing token % for row % (last written under %)', NEW.fence, OLD.id, OLD.fence
                USING ERRCODE = '{STALE}';
        END IF;
        -- 55P03 unless the grant that produced NEW.fence holds the row's lock right now
        PERFORM named_lock_assert(OLD.lock_name, NEW.fence);
        RETURN NEW;
    END $$""",
    "CREATE TRIGGER fenced_rows_guard BEFORE UPDATE ON fenced_rows FOR EACH ROW EXECUTE FUNCTION fenced_rows_guard()",
]


def setup_protected_table(conn):
    for sql in PROTECTED_DDL:
        conn.execute(sql)


def tl_of(token):
    return token >> COUNTER_BITS


def counter_of(token):
    return token & COUNTER_MASK


def grant(conn, name, kind, observer=None):
    """One fenced grant of `name` through FENCED[kind], checked while it is held (the
    session's token, and named_lock_check from `observer`), then released; the token."""
    sql, scope = FENCED[kind]
    if scope == "xact":
        conn.execute("BEGIN")
    try:
        token = one(conn, sql, (name,))
        assert token is not None, f"{sql} with {name!r} returned NULL on a free lock"
        assert one(conn, "SELECT named_lock_token(%s)", (name,)) == token
        if observer is not None:
            assert one(observer, "SELECT named_lock_check(%s, %s)", (name, token)) is True
    finally:
        if scope == "xact":
            conn.execute("COMMIT")
    if scope == "session":
        assert one(conn, "SELECT unlock_named(%s)", (name,)) is True
    assert one(conn, "SELECT named_lock_token(%s)", (name,)) is None
    if observer is not None:
        assert one(observer, "SELECT named_lock_check(%s, %s)", (name, token)) is False
    return token


def grants(conns, names, n):
    """`n` fenced grants, round robin over the sessions, the names and every fenced
    function; each a fresh grant after the previous one ended, so each token must be
    larger than the one before (the sessions are distinct backends)."""
    tokens = []
    for i in range(n):
        conn = conns[i % len(conns)]
        observer = conns[(i + 1) % len(conns)] if len(conns) > 1 else None
        tokens.append(grant(conn, names[i % len(names)], i % len(FENCED), observer))
    bad = [(a, b) for a, b in zip(tokens, tokens[1:], strict=False) if not a < b]
    assert not bad, f"tokens not strictly increasing in grant order: {bad[:5]}"
    assert len(set(tokens)) == n
    return tokens


def bulk_grants(conn, name, n):
    """`n` fenced grants of `name` in one statement, each released before the next; the
    largest token. Each token must be larger than the one before."""
    count, released, increasing, top = conn.execute(
        """WITH g AS (SELECT i, lock_named_fenced(%s) AS t, unlock_named(%s) AS u FROM generate_series(1, %s) i)
        SELECT count(*), bool_and(u), bool_and(t > prev), max(t)
        FROM (SELECT t, u, lag(t, 1, 0::bigint) OVER (ORDER BY i) AS prev FROM g) q""",
        (name, name, n),
    ).fetchone()
    assert (count, released, increasing) == (n, True, True), (count, released, increasing)
    return top


def outrun_copy(conn, name, data_dir):
    """Fenced grants on a primary until its counter is past the high-water mark in the
    fence file of `data_dir`, a base backup of it: a server promoted from that copy then
    counts from below the primary's counter, and only the timeline can order its tokens
    above the primary's. The largest token."""
    try:
        copied = fence_mark(data_dir)
    except FileNotFoundError:
        copied = 0
    now = counter_of(one(conn, "SELECT lock_named_fenced(%s)", (name,)))
    assert one(conn, "SELECT unlock_named(%s)", (name,)) is True
    top = bulk_grants(conn, name, max(copied - now, 0) + 5000)
    assert counter_of(top) > copied
    return top


def timeline(conn):
    """The server's current timeline, read two ways that must agree: the checkpoint's
    (after a CHECKPOINT) and the current WAL file's name."""
    conn.execute("CHECKPOINT")
    tl = one(conn, "SELECT timeline_id FROM pg_control_checkpoint()")
    walfile = one(conn, "SELECT pg_walfile_name(pg_current_wal_lsn())")
    assert int(walfile[:8], 16) == tl, (walfile, tl)
    return tl


def fence_mark(data_dir):
    """The high-water mark in the data directory's fence file (its last line)."""
    with open(os.path.join(data_dir, FENCE_FILE), encoding="utf-8") as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    return int(lines[-1])


def write_row(conn, row_id, token, payload):
    """UPDATE the protected row under `token`; None when the trigger let it through,
    else the SQLSTATE of the refusal."""
    try:
        with conn.transaction():
            n = conn.execute(
                "UPDATE fenced_rows SET fence = %s, payload = %s WHERE id = %s", (token, payload, row_id)
            ).rowcount
        assert n == 1, f"row {row_id} is missing"
        return None
    except psycopg.Error as e:
        assert sqlstate(e) in (STALE, NOT_HELD), f"unexpected error from the trigger: {e!r}"
        return sqlstate(e)


def row(conn, row_id):
    return conn.execute("SELECT fence, payload FROM fenced_rows WHERE id = %s", (row_id,)).fetchone()


def wait_replayed(primary, standby, what="the standby to replay the primary's WAL"):
    """Wait until `standby` replayed everything `primary` wrote so far."""
    lsn = one(primary, "SELECT pg_current_wal_lsn()")
    wait_until(
        lambda: one(standby, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)),
        timeout=PATIENCE,
        what=what,
    )


def wait_streaming_async(primary, application_name):
    """Wait until `application_name` streams from `primary`, asynchronously."""

    def streaming():
        return primary.execute(
            "SELECT state, sync_state FROM pg_stat_replication WHERE application_name = %s", (application_name,)
        ).fetchall() == [("streaming", "async")]

    wait_until(streaming, what=f"{application_name} to stream asynchronously")
    assert one(primary, "SHOW synchronous_standby_names") == ""


def assert_standby_refuses_tokens(conn, name):
    """On a hot standby every fenced grant function raises 25006 and leaves nothing
    held; the token functions answer (nothing is held there under any token)."""
    for sql, scope in FENCED:
        if scope == "xact":
            conn.execute("BEGIN")
        try:
            one(conn, sql, (name,))
            raise AssertionError(f"{sql} handed out a token on a hot standby")
        except psycopg.Error as e:
            assert sqlstate(e) == "25006", f"{sql} on a standby: {e!r}"
        finally:
            if scope == "xact":
                conn.execute("ROLLBACK")
    assert one(conn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()") == 0
    assert one(conn, "SELECT named_lock_token(%s)", (name,)) is None


# The story of test_promote and test_patroni: a primary hands out tokens and writes the
# protected row under one; a streaming standby copies it, and a writer of the primary (a
# zombie once the primary dies) writes the row last; once the standby is promoted, its
# tokens outrank every token of the old primary, and the trigger refuses those.

def first_write(conns, names, row_lock, n):
    """On a new cluster's primary: the protected table, `n` fenced grants over `conns`
    on timeline 1, then row 1 written under a fenced grant of `row_lock` (released). The
    grants' tokens and the row's."""
    conn = conns[0]
    setup_protected_table(conn)
    assert timeline(conn) == 1
    before = grants(conns, names, n)
    assert {tl_of(t) for t in before} == {1}
    first = one(conn, "SELECT lock_named_fenced(%s)", (row_lock,))
    assert first > max(before)
    conn.execute("INSERT INTO fenced_rows VALUES (1, %s, %s, 'first')", (row_lock, first))
    assert one(conn, "SELECT unlock_named(%s)", (row_lock,)) is True
    return before, first


def replicated_write(primary, writer, standby, row_lock, payload):
    """`writer`, a session of the primary (as `primary` is), takes the row's lock and
    writes row 1 under its token, with `payload`; `standby`, a session on a streaming
    standby, replays the write and refuses tokens. The writer's token (it keeps the
    lock)."""
    token = one(writer, "SELECT lock_named_fenced(%s)", (row_lock,))
    assert write_row(writer, 1, token, payload) is None
    wait_replayed(primary, standby, f"the standby to replay the write {payload!r}")
    assert row(standby, 1) == (token, payload)
    assert_standby_refuses_tokens(standby, row_lock)
    return token


def tokens_after_promotion(survivor, conns, names, n, old, tl):
    """On a promoted server, now on timeline `tl`: a fenced grant in `survivor` (a
    session opened before the promotion), then `n` grants over `conns`, all of them
    larger than every token in `old` (the old primary's). The `n` grants' tokens."""
    assert timeline(conns[0]) == tl
    t = one(survivor, "SELECT lock_named_fenced(%s)", (names[0],))
    assert tl_of(t) == tl and t > max(old)
    assert one(survivor, "SELECT unlock_named(%s)", (names[0],)) is True
    new = grants(conns, names, n)
    assert min(new) > t
    assert {tl_of(x) for x in new} == {tl}
    return new


def trigger_refuses_old_tokens(conn, holder, row_lock, old_tokens, payload):
    """The trigger pattern on a promoted server, whose row 1 was last written under one
    of `old_tokens` (tokens of the old primary, none older than that write): none of them
    writes the row from `conn`, their grants holding nothing here (55P03), also while
    `holder` holds the row's lock; then `holder` writes it under its token, with
    `payload`, and from then on they are stale. The holder's token (it keeps the lock)."""
    for t in old_tokens:
        assert write_row(conn, 1, t, "zombie") == NOT_HELD, t
    token = one(holder, "SELECT lock_named_fenced(%s)", (row_lock,))
    assert token > max(old_tokens)
    for t in old_tokens:
        assert write_row(conn, 1, t, "zombie") == NOT_HELD, t
    assert write_row(holder, 1, token, payload) is None
    assert row(conn, 1) == (token, payload)
    for t in old_tokens:
        assert write_row(conn, 1, t, "zombie") == STALE, t
    assert row(conn, 1) == (token, payload)
    return token
