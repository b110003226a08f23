"""Generated timeouts: intervals of any months/days/microseconds mix. The extension
counts a month as 30 days (like PostgreSQL's interval arithmetic); a negative total is
22023, zero is a try, and a positive total, however large, is a real wait, never an
overflow into a negative or zero timeout."""

import psycopg
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import TRIED, my_locks, pg_version

DAY_US = 86_400_000_000
I32 = st.integers(-(2**31) + 1, 2**31 - 1)
# microseconds kept within 2^53 so the literal is exact on every version
MICROS = st.integers(-(2**53), 2**53)


def total_us(months, days, micros):
    return (months * 30 + days) * DAY_US + micros


def literal(months, days, micros):
    return f"{months} mons {days} days {micros} microseconds"


@settings(max_examples=200)
@given(st.one_of(I32, st.integers(-3, 3)), st.one_of(I32, st.integers(-100, 100)),
       st.one_of(MICROS, st.integers(-(DAY_US * 3), DAY_US * 3)))
@example(1, -30, 0)
@example(1, -30, -1)
@example(2**31 - 1, -(2**31) + 1, 0)
@example(-(2**31) + 1, 2**31 - 1, 2**53)
@example(0, 0, 1)
@example(0, 0, -1)
def test_free_lock_with_any_timeout(conn, months, days, micros):
    TRIED["intervals (free lock)"] += 1
    iv = literal(months, days, micros)
    if total_us(months, days, micros) < 0:
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SELECT lock_named('prop-free', %s::interval)", (iv,))
        assert my_locks(conn) == 0
        return
    assert conn.execute("SELECT lock_named('prop-free', %s::interval)", (iv,)).fetchone()[0] is True
    assert conn.execute("SELECT unlock_named('prop-free')").fetchone()[0] is True
    assert my_locks(conn) == 0


@pytest.fixture
def busy(other):
    """'prop-busy' held by another session for the duration of a test."""
    other.execute("SELECT lock_named('prop-busy')")
    yield "prop-busy"
    other.execute("SELECT unlock_named('prop-busy')")


HUGE = [
    "1000 years",
    "178000000 years",
    literal(2**31 - 1, 2**31 - 1, 2**53),
    literal(2**31 - 1, -(2**31) + 1, 0),  # positive total despite the negative days
    "2147483647 mons 2147483647 days 9223372036854775806 microseconds",
]


@pytest.mark.parametrize("iv", HUGE)
@pytest.mark.parametrize("call", [
    "lock_named(%s, %s::interval)",
    "lock_many(ARRAY['prop-m1', %s, 'prop-m2'], %s::interval)",
])
def test_huge_timeout_really_waits(conn, busy, iv, call):
    """A huge timeout on a busy lock waits (until statement_timeout), and holds nothing
    afterwards: it did not overflow into an instant false or an error."""
    TRIED["intervals (busy lock, huge)"] += 1
    conn.execute("SET statement_timeout = '300ms'")
    try:
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute(f"SELECT {call}", (busy, iv))
    finally:
        conn.execute("SET statement_timeout = '30s'")
    assert my_locks(conn) == 0


@pytest.mark.parametrize("iv", ["0", "1 mon -30 days", "0.4 microseconds", "1 microsecond",
                                "1 day -86399999999 microseconds"])
def test_tiny_timeout_on_a_busy_lock_is_false(conn, busy, iv):
    TRIED["intervals (busy lock, tiny)"] += 1
    assert conn.execute("SELECT lock_named(%s, %s::interval)", (busy, iv)).fetchone()[0] is False
    assert my_locks(conn) == 0


def test_infinite_timeouts(conn, busy):
    """PostgreSQL 17+ has infinite intervals: 'infinity' waits like a huge timeout,
    '-infinity' is negative (22023). Before 17 the literal itself is invalid."""
    TRIED["intervals (infinity)"] += 3
    if pg_version() < 17:
        with pytest.raises(psycopg.errors.InvalidDatetimeFormat):
            conn.execute("SELECT lock_named('prop-free', 'infinity'::interval)")
        return
    assert conn.execute("SELECT lock_named('prop-free', 'infinity')").fetchone()[0] is True
    assert conn.execute("SELECT unlock_named('prop-free')").fetchone()[0] is True
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("SELECT lock_named('prop-free', '-infinity')")
    conn.execute("SET statement_timeout = '300ms'")
    try:
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT lock_named(%s, 'infinity')", (busy,))
    finally:
        conn.execute("SET statement_timeout = '30s'")
    assert my_locks(conn) == 0


@settings(max_examples=100)
@given(st.integers(-(2**31), 2**31 - 1))
@example(-(2**31))
@example(2**31 - 1)
@example(0)
@example(-1)
def test_pair_ids_map_to_objid(conn, ident):
    TRIED["pair ids"] += 1
    assert conn.execute("SELECT xact_lock_pair('prop-ns', %s::integer, '1s')", (ident,)).fetchone()[0] is True
    # a transaction lock outside a transaction block ends with the statement: check
    # the tag inside one statement
    with conn.transaction():
        conn.execute("SELECT xact_lock_pair('prop-ns', %s::integer)", (ident,))
        row = conn.execute(
            "SELECT l.objid::bigint, l.objsubid, v.key2 FROM pg_locks l "
            "JOIN advisory_locks_v v ON v.pid = l.pid AND v.key_kind = 'pair' "
            "WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid()"
        ).fetchall()
        assert row == [(ident & 0xFFFFFFFF, 2, ident)]
    assert my_locks(conn) == 0
