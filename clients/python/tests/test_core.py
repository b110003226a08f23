"""The driver-independent core: keys against the server's named_lock_key/named_lock_key32
(the md5 contract of src/name/hash.rs), exceptions, sqlstate, and the installed package."""

from __future__ import annotations

import hashlib
import os
import sys
from datetime import timedelta
from importlib import metadata, resources
from pathlib import Path

import psycopg
import pytest

import pg_named_locks
from pg_named_locks import LockLost, LockNotAcquired, NamedLockError, lock_key, lock_key32, sqlstate
from pg_named_locks._core import Target, to_interval

NAMES = [
    "daily-report-job",
    "",
    "a",
    "ü" * 100,
    "account:17",
    "x" * 5000,
    "名前",
    "emoji 🔒 lock",
    "nul-free but \t tab and \n newline",
    "Ω≈ç√∫",
]


def test_known_vectors():
    # md5("") = d41d8cd98f00b204e9800998ecf8427e, md5("a") = 0cc175b9c0f1b6a831c399e269772661
    assert lock_key("") == 0xD41D8CD98F00B204 - (1 << 64)
    assert lock_key32("") == 0xD41D8CD9 - (1 << 32)
    assert lock_key("a") == 0x0CC175B9C0F1B6A8
    assert lock_key32("a") == 0x0CC175B9


@pytest.mark.parametrize("n", NAMES)
def test_keys_match_the_server(observer, n):
    assert observer.scalar("SELECT named_lock_key(%s)", n) == lock_key(n)
    assert observer.scalar("SELECT named_lock_key32(%s)", n) == lock_key32(n)


def test_keys_are_the_utf8_md5_prefix():
    for n in NAMES:
        digest = hashlib.md5(n.encode("utf-8")).digest()
        assert lock_key(n) == int.from_bytes(digest[:8], "big", signed=True)
        assert lock_key32(n) == int.from_bytes(digest[:4], "big", signed=True)
        assert -(1 << 63) <= lock_key(n) < (1 << 63)
        assert -(1 << 31) <= lock_key32(n) < (1 << 31)


def test_keys_take_text_only():
    with pytest.raises(TypeError):
        lock_key(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        lock_key32(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Target(b"bytes", shared=False, xact=False, fenced=True)  # type: ignore[arg-type]


def test_exceptions():
    e = LockNotAcquired("job")
    assert isinstance(e, NamedLockError) and e.name == "job" and "job" in str(e)
    lost = LockLost(["a", "b"], "the connection was lost")
    assert isinstance(lost, NamedLockError) and lost.name == ["a", "b"]
    assert lost.reason == "the connection was lost" and "lost" in str(lost)


def test_sqlstate(observer):
    with pytest.raises(psycopg.Error) as e:
        observer.scalar("SELECT lock_named(NULL)")
    assert sqlstate(e.value) == "22004"
    with pytest.raises(psycopg.Error) as e:
        observer.scalar("SELECT lock_named('')")
    assert sqlstate(e.value) == "22023"

    class Wrapped(Exception):
        orig = e.value

    assert sqlstate(Wrapped()) == "22023", "SQLAlchemy's DBAPIError keeps the driver's error in .orig"
    assert sqlstate(ValueError("no database error")) is None


def test_intervals():
    assert to_interval(1, "lease") == timedelta(seconds=1)
    assert to_interval(0.25, "timeout") == timedelta(milliseconds=250)
    assert to_interval(timedelta(minutes=2), "lease") == timedelta(minutes=2)
    with pytest.raises(TypeError):
        to_interval("5", "timeout")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        to_interval(True, "timeout")


def test_argument_checks():
    with pytest.raises(ValueError, match="shared"):
        Target(["a", "b"], shared=True, xact=False, fenced=True)
    for kwargs in ({"shared": True, "xact": False}, {"shared": False, "xact": True}):
        with pytest.raises(ValueError, match="leased"):
            Target("a", fenced=True, lease=5, **kwargs)
    with pytest.raises(ValueError, match="leased"):
        Target(["a"], shared=False, xact=False, fenced=True, lease=5)
    with pytest.raises(ValueError, match="blocking"):
        Target("a", shared=False, xact=False, fenced=True).lock_call(blocking=False, timeout=1)
    t = Target("a", shared=False, xact=False, fenced=True, lease=timedelta(seconds=3))
    assert t.renew_interval == pytest.approx(1.0)


def test_the_installed_package():
    assert pg_named_locks.__version__ == metadata.version("pg-named-locks")
    assert (resources.files("pg_named_locks") / "py.typed").is_file(), "typed: PEP 561 marker installed"
    if os.environ.get("PGNL_EXPECT_INSTALLED"):
        # scripts/python-client-tests.sh: the package under test is the one pip installed
        # into the fresh virtual environment, not the source tree.
        here = Path(pg_named_locks.__file__).resolve()
        assert Path(sys.prefix).resolve() in here.parents, here
        assert "site-packages" in here.parts
    extras = metadata.metadata("pg-named-locks").get_all("Provides-Extra") or []
    assert {"psycopg", "sqlalchemy"} <= set(extras)
    assert metadata.requires("pg-named-locks") is not None
    core = [r for r in metadata.requires("pg-named-locks") or [] if "extra ==" not in r]
    assert core == [], "the core has no required dependencies"
