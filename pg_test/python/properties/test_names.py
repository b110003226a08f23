"""Generated names against the compatibility contract and the registry: any text a
UTF8 database can hold (no NUL, no surrogates), 0 bytes to 1 MB, with quotes,
backslashes, control characters, combining marks, right-to-left text and emoji.

For every name: named_lock_key / named_lock_key32 equal the md5 reference and the SQL
idiom; a lock taken by name is exactly the built-in's lock tag, shows in
advisory_locks_v under its name (cut at a character boundary and marked '…' past
168 bytes), is found by named_lock_name, and is gone after one unlock."""

import psycopg
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import NAME_BYTES, TRIED, my_locks, stored
from pgtest_util import key32, key64, u32

MB = 1_000_000

# Characters chosen for trouble, mixed into otherwise arbitrary text.
HOSTILE = [
    "'", '"', "\\", "\\\\'", "''", "%", "_", ":", "…", "$$", ";", "--", "/*",
    "\t", "\n", "\r", "\x01", "\x1b", "\x7f", "\u0085",            # control characters
    "\u0301", "e\u0301", "\u20dd",                                  # combining marks
    "\u202e", "\u200f", "\u05d0\u05d1", "\u0627\u0644",             # RTL override, Hebrew, Arabic
    "\u200b", "\ufeff", "\u00a0",                                   # invisible
    "😀", "👩\u200d👩\u200d👧", "🇫🇷", "\U0001f3fd",                 # emoji, ZWJ, flags, modifiers
    "\uffff", "\ufffd", "\U0010ffff", "\ue000",                     # non-characters, private use
    "名", "ü", "€",
]
# Every code point PostgreSQL accepts in UTF8 text: all but NUL and the surrogates.
char = st.one_of(
    st.characters(exclude_categories=["Cs"], exclude_characters=["\x00"]),
    st.sampled_from(HOSTILE),
)
short_text = st.lists(char, max_size=120).map("".join)


def _repeat(unit: str, n: int) -> str:
    """unit repeated to about n bytes, at most 1 MB."""
    size = max(1, len(unit.encode()))
    return unit * max(1, min(n, MB) // size)


# Long names: a random unit repeated up to 1 MB, around the 168-byte limit too.
long_text = st.builds(
    _repeat,
    st.lists(char, min_size=1, max_size=5).map("".join),
    st.one_of(st.integers(158, 178), st.integers(1, MB)),
)
names = st.one_of(short_text, short_text, long_text)

HUGE = [
    "a" * MB,                       # 1 MB of ASCII
    "é" * (MB // 2),                # 1 MB of 2-byte characters
    "😀" * (MB // 4),               # 1 MB of 4-byte characters
    "x" + "€" * 70,                 # 211 bytes: the 168-byte cut falls inside a character
    "xx" + "😀" * 60,               # and again, 4-byte characters
    "a" * NAME_BYTES,               # exactly the limit: not cut
    "a" * (NAME_BYTES + 1),         # one past it
]


@settings(max_examples=300)
@given(names)
@example("")
@example("x")
@example("'; DROP TABLE x; --")
@example("\\x00")
@example(HUGE[0])
@example(HUGE[1])
@example(HUGE[2])
def test_keys_match_the_md5_contract(conn, name):
    TRIED["names (keys)"] += 1
    got = conn.execute(
        "SELECT named_lock_key(n), named_lock_key32(n), "
        "       ('x' || substr(md5(n), 1, 16))::bit(64)::bigint, octet_length(n) "
        "FROM (SELECT %s::text AS n) s",
        (name,),
    ).fetchone()
    assert got[3] == len(name.encode()), "the server got other bytes than were sent"
    assert got[0] == key64(name)
    assert got[1] == key32(name)
    assert got[2] == key64(name), "the SQL idiom disagrees"


def _view_row(conn, key):
    return conn.execute(
        "SELECT lock_name, key_kind, mode, granted FROM advisory_locks_v "
        "WHERE pid = pg_backend_pid() AND lock_key = %s",
        (key,),
    ).fetchall()


@settings(max_examples=250)
@given(names)
@example(HUGE[0])
@example(HUGE[1])
@example(HUGE[2])
@example(HUGE[3])
@example(HUGE[4])
@example(HUGE[5])
@example(HUGE[6])
def test_lock_round_trip(conn, name):
    TRIED["names (lock round trip)"] += 1
    if name == "":
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SELECT try_lock_named(%s)", (name,))
        assert my_locks(conn) == 0
        return
    k = key64(name)
    assert conn.execute("SELECT try_lock_named(%s)", (name,)).fetchone()[0] is True
    try:
        # the built-in's lock tag: (key >> 32, key & 0xffffffff, 1), exclusive
        rows = conn.execute(
            "SELECT classid::bigint, objid::bigint, objsubid, mode, granted FROM pg_locks "
            "WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        ).fetchall()
        assert rows == [(u32(k >> 32), u32(k), 1, "ExclusiveLock", True)]
        # by name in the view and the look-up, cut at a character boundary when long
        assert _view_row(conn, k) == [(stored(name), "bigint", "exclusive", True)]
        assert conn.execute("SELECT named_lock_name(%s::bigint)", (k,)).fetchone()[0] == stored(name)
        reg = conn.execute(
            "SELECT lock_name, truncated FROM named_lock_registry() "
            "WHERE kind = 'bigint' AND (classid::bigint << 32 | objid::bigint) = %s",
            (k,),
        ).fetchall()
        assert reg == [(stored(name), len(name.encode()) > NAME_BYTES)]
        assert len(stored(name).encode()) <= NAME_BYTES + len("…".encode())
        # the holder is this backend, by name
        assert conn.execute(
            "SELECT named_lock_holders(%s) = ARRAY[pg_backend_pid()]", (name,)
        ).fetchone()[0] is True
    finally:
        assert conn.execute("SELECT unlock_named(%s)", (name,)).fetchone()[0] is True
    assert my_locks(conn) == 0


@settings(max_examples=150)
@given(names, names, st.integers(-(2**31), 2**31 - 1))
@example("ns", HUGE[3], -(2**31))
@example(HUGE[4], "x", 2**31 - 1)
@example("a", "b", 0)
def test_pair_round_trip(conn, ns, name, ident):
    TRIED["pairs (namespace, name, id)"] += 1
    if ns == "" or name == "":
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SELECT try_lock_pair(%s, %s::text)", (ns, name))
        with pytest.raises(psycopg.errors.InvalidParameterValue) if ns == "" else _nothing():
            if conn.execute("SELECT try_lock_pair(%s, %s::integer)", (ns, ident)).fetchone()[0]:
                conn.execute("SELECT unlock_pair(%s, %s::integer)", (ns, ident))
        assert my_locks(conn) == 0
        return
    k1, k2 = key32(ns), key32(name)
    assert conn.execute("SELECT try_lock_pair(%s, %s::text)", (ns, name)).fetchone()[0] is True
    assert conn.execute("SELECT try_lock_pair_shared(%s, %s::integer)", (ns, ident)).fetchone()[0] is True
    try:
        rows = set(conn.execute(
            "SELECT classid::bigint, objid::bigint, objsubid, mode FROM pg_locks "
            "WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        ).fetchall())
        assert rows == {(u32(k1), u32(k2), 2, "ExclusiveLock"), (u32(k1), u32(ident), 2, "ShareLock")}
        view = set(conn.execute(
            "SELECT key1, key2, lock_name, mode FROM advisory_locks_v WHERE pid = pg_backend_pid()"
        ).fetchall())
        # (namespace, id) pairs show as "namespace:id" with the namespace as stored
        assert view == {(k1, k2, stored(f"{ns}:{name}"), "exclusive"),
                        (k1, ident, f"{stored(ns)}:{ident}", "shared")}
        assert (conn.execute("SELECT named_lock_name(%s::int, %s::int)", (k1, k2)).fetchone()[0]
                == stored(f"{ns}:{name}"))
        assert (conn.execute("SELECT named_lock_name(%s::int, %s::int)", (k1, ident)).fetchone()[0]
                == f"{stored(ns)}:{ident}")
    finally:
        assert conn.execute("SELECT unlock_pair(%s, %s::text)", (ns, name)).fetchone()[0] is True
        assert conn.execute("SELECT unlock_pair_shared(%s, %s::integer)", (ns, ident)).fetchone()[0] is True
    assert my_locks(conn) == 0


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# Arrays: a small pool, so duplicates are common, plus arbitrary names, NULLs and ''.
pool = st.sampled_from(["arr-a", "arr-b", "ARR-A", "arr-a ", "e\u0301", "\u00e9", "😀", "'"])
element = st.one_of(pool, short_text, st.none())


@settings(max_examples=200)
@given(st.lists(element, max_size=40))
@example([])
@example([None])
@example([""])
@example(["arr-a"] * 100)
@example(["arr-a", None, ""])
@example(["arr-a", "", None])
def test_many_is_all_or_nothing(conn, arr):
    TRIED["arrays"] += 1
    bad = next((e for e in arr if e is None or e == ""), "ok")
    if bad != "ok":
        err = psycopg.errors.NullValueNotAllowed if bad is None else psycopg.errors.InvalidParameterValue
        for fn in ("try_lock_many", "lock_many", "unlock_many"):
            with pytest.raises(err):
                conn.execute(f"SELECT {fn}(%s::text[])", (arr,))
        assert my_locks(conn) == 0
        return
    distinct = {key64(e) for e in arr}
    assert conn.execute("SELECT try_lock_many(%s::text[])", (arr,)).fetchone()[0] is True
    held = conn.execute(
        "SELECT array_agg((classid::bigint << 32) | objid::bigint) FROM pg_locks "
        "WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND objsubid = 1"
    ).fetchone()[0] or []
    assert {(k + 2**63) % 2**64 - 2**63 for k in held} == distinct
    # one hold per distinct name: one unlock_many releases them all
    assert conn.execute("SELECT unlock_many(%s::text[])", (arr,)).fetchone()[0] == len(distinct)
    assert my_locks(conn) == 0


def test_monitoring_survives_everything(conn):
    """After all the names above: every monitoring surface still answers, with valid
    UTF-8 (psycopg decodes strictly) and names within the stored limit."""
    TRIED["monitoring reads"] += 3
    conn.execute("SELECT register_lock_name(%s)", ("x" + "€" * 70,))
    reg = conn.execute("SELECT lock_name, truncated FROM named_lock_registry()").fetchall()
    assert any(t for _, t in reg)
    for name, truncated in reg:
        assert len(name.encode()) <= NAME_BYTES + len("…".encode())
        assert name.endswith("…") or not truncated
        if truncated:
            assert len(name[:-1].encode()) > NAME_BYTES - 4, "cut earlier than a character boundary needs"
    stats = conn.execute("SELECT lock_name, acquisitions FROM named_lock_stats").fetchall()
    assert len(stats) == len(reg)
    assert conn.execute("SELECT count(*) FROM advisory_locks_v").fetchone()[0] >= 0
    info = conn.execute("SELECT names, capacity FROM named_lock_registry_info()").fetchone()
    assert info[0] == len(reg) and info[0] <= info[1]
