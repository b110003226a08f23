"""Lock names of other roles' locks, with two real sessions: hidden from an ordinary
role in advisory_locks_v, named_lock_stats and named_lock_name, shown to the holder's
role and to pg_read_all_stats members. Generated names, so quoting and long names are
covered too."""

import os

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import HIDDEN, TRIED, stored
from pgtest_util import key64

ROLES = ["regress_props_owner", "regress_props_other", "regress_props_stats"]


@pytest.fixture(scope="module")
def sessions(conn):
    for r in ROLES:
        conn.execute(f"DROP ROLE IF EXISTS {r}")
        conn.execute(f"CREATE ROLE {r} LOGIN")
    conn.execute("GRANT pg_read_all_stats TO regress_props_stats")
    s = {r: _connect_as(r) for r in ROLES}
    yield s
    for c in s.values():
        c.close()
    for r in ROLES:
        conn.execute(f"DROP ROLE {r}")


def _connect_as(role):
    return psycopg.connect(
        host=os.environ.get("PROPS_HOST", "127.0.0.1"),
        port=int(os.environ.get("PROPS_PORT", "26018")),
        dbname=os.environ.get("PROPS_DB", "props"),
        user=role, autocommit=True, connect_timeout=10,
        options="-c statement_timeout=30s -c lock_timeout=10s",
    )


def _seen(c, owner_pid, k):
    view = c.execute(
        "SELECT lock_name FROM advisory_locks_v WHERE pid = %s AND lock_key = %s", (owner_pid, k)
    ).fetchall()
    look = c.execute("SELECT named_lock_name(%s::bigint)", (k,)).fetchone()[0]
    return view, look


names = st.text(st.characters(exclude_categories=["Cs"], exclude_characters=["\x00"]),
                min_size=1, max_size=300)


@settings(max_examples=40)
@given(st.one_of(names, st.sampled_from(["privacy-secret", "'\\\"", "😀" * 80])))
def test_names_are_private_across_sessions(sessions, name):
    TRIED["privacy (names)"] += 1
    owner, other, stats = (sessions[r] for r in ROLES)
    k = key64(name)
    owner.execute("SELECT lock_named(%s)", (name,))
    try:
        pid = owner.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert _seen(owner, pid, k) == ([(stored(name),)], stored(name))
        assert _seen(stats, pid, k) == ([(stored(name),)], stored(name))
        assert _seen(other, pid, k) == ([(HIDDEN,)], HIDDEN)
        # statistics: the row exists for everyone, the name only for those allowed
        n_owner = owner.execute("SELECT count(*) FROM named_lock_stats WHERE lock_name = %s",
                                (stored(name),)).fetchone()[0]
        n_other = other.execute("SELECT count(*) FROM named_lock_stats WHERE lock_name = %s",
                                (stored(name),)).fetchone()[0]
        assert n_owner == 1
        assert n_other == (1 if stored(name) == HIDDEN else 0)
        assert (other.execute("SELECT count(*) FROM named_lock_stats").fetchone()[0]
                == owner.execute("SELECT count(*) FROM named_lock_stats").fetchone()[0])
    finally:
        owner.execute("SELECT unlock_named(%s)", (name,))
