"""A name is its characters, whatever the database encoding (issue 15, item 5).

The registry is cluster-wide and stores UTF-8. Names are converted to UTF-8 on the way
in and to the database encoding on the way out; a character the database cannot
represent is shown as \\uXXXX. Every client here speaks UTF-8 (client_encoding), so what
it reads back is the server's conversion of what the database holds."""

import pytest

from pgtest_util import key64, one, sqlstate

ENCODINGS = ["utf8", "latin1", "eucjp", "sqlascii"]
# (name, the databases that can represent it)
NAMES = [
    ("plain-ascii-job", ENCODINGS),
    ("Ünïcödé-jöb", ["utf8", "latin1", "sqlascii"]),
    ("日本語のジョブ", ["utf8", "eucjp", "sqlascii"]),
    ("rocket-🚀", ["utf8", "sqlascii"]),
]


PG_ENCODING = {"utf8": "UTF8", "latin1": "LATIN1", "eucjp": "EUC_JP", "sqlascii": "SQL_ASCII"}


def escaped(oracle, name, enc):
    """What a database of encoding `enc` shows for `name` (src/pg/encoding.rs): each
    character PostgreSQL's own conversion cannot represent in `enc` as \\uXXXX
    (\\UXXXXXXXX above U+FFFF). `oracle` is a session on the UTF8 database."""
    if enc in ("utf8", "sqlascii"):
        return name
    out = ""
    for c in name:
        try:
            oracle.execute("SELECT convert_to(%s, %s)", (c, PG_ENCODING[enc]))
            out += c
        except Exception as e:  # noqa: BLE001 - 22P05: no equivalent in that encoding
            assert sqlstate(e) == "22P05", e
            out += f"\\u{ord(c):04X}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08X}"
    return out


@pytest.mark.parametrize("enc", ENCODINGS)
def test_key_is_the_md5_of_the_utf8_form_in_every_database(db, enc):
    conn = db(enc)
    for name, where in NAMES:
        if enc in where:
            assert one(conn, "SELECT named_lock_key(%s)", (name,)) == key64(name), (enc, name)


@pytest.mark.parametrize("enc", ENCODINGS)
def test_a_non_ascii_name_locks_and_shows_in_every_database(db, enc):
    conn = db(enc)
    for name, where in NAMES:
        if enc not in where:
            continue
        assert one(conn, "SELECT try_lock_named(%s)", (name,)) is True, (enc, name)
        shown = conn.execute(
            "SELECT lock_name, lock_key FROM advisory_locks_v WHERE pid = pg_backend_pid() AND lock_key = %s",
            (key64(name),),
        ).fetchall()
        assert shown == [(name, key64(name))], (enc, name)
        assert one(conn, "SELECT named_lock_name(named_lock_key(%s))", (name,)) == name
        assert one(conn, "SELECT lock_name FROM named_lock_stats WHERE lock_name = %s", (name,)) == name
        assert one(conn, "SELECT unlock_named(%s)", (name,)) is True


def test_names_from_one_database_read_in_another(db):
    """Locked in a UTF8 database, read from every other one: converted where the
    encoding can represent the characters, escaped where it cannot, never an error."""
    holder = db("utf8")
    for name, _ in NAMES:
        holder.execute("SELECT lock_named(%s)", (name,))
    try:
        for enc in ENCODINGS:
            reader = db(enc)
            for name, _ in NAMES:
                want = escaped(holder, name, enc)
                # the view lists every database's locks; named_lock_name works by key
                got = one(reader, "SELECT lock_name FROM advisory_locks_v WHERE lock_key = %s", (key64(name),))
                assert got == want, (enc, name, got)
                assert one(reader, "SELECT named_lock_name(%s::bigint)", (key64(name),)) == want
                row = reader.execute(
                    "SELECT count(*) FROM named_lock_registry() WHERE lock_name = %s", (want,)
                ).fetchone()
                assert row[0] == 1, (enc, name)
    finally:
        for name, _ in NAMES:
            holder.execute("SELECT unlock_named(%s)", (name,))


def test_the_sql_md5_idiom_agrees_only_for_utf8_databases_or_ascii_names(db):
    idiom = "SELECT ('x' || substr(md5(%s), 1, 16))::bit(64)::bigint"
    assert one(db("utf8"), idiom, ("Ünïcödé-jöb",)) == key64("Ünïcödé-jöb")
    assert one(db("latin1"), idiom, ("Ünïcödé-jöb",)) != key64("Ünïcödé-jöb")
    assert one(db("latin1"), idiom, ("plain-ascii-job",)) == key64("plain-ascii-job")


def test_sql_ascii_takes_utf8_and_refuses_other_bytes(db):
    conn = db("sqlascii")
    # a byte that is not UTF-8: PostgreSQL's own check of the conversion to UTF-8
    with pytest.raises(Exception) as e:
        conn.execute(r"SELECT lock_named(E'bad-\xff-name')")
    assert sqlstate(e.value) == "22021", e.value
    assert one(conn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()") == 0


def test_many_converts_every_element(db):
    conn = db("latin1")
    names = ["Ünïcödé-a", "Ünïcödé-b", "plain-c"]
    assert one(conn, "SELECT try_lock_many(%s::text[])", (names,)) is True
    got = sorted(r[0] for r in conn.execute(
        "SELECT lock_name FROM advisory_locks_v WHERE pid = pg_backend_pid()").fetchall())
    assert got == sorted(names)
    keys = sorted(r[0] for r in conn.execute(
        "SELECT lock_key FROM advisory_locks_v WHERE pid = pg_backend_pid()").fetchall())
    assert keys == sorted(key64(n) for n in names)
    assert one(conn, "SELECT unlock_many(%s::text[])", (names,)) == 3
