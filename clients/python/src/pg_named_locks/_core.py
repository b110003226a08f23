"""The driver-independent parts: keys, exceptions, argument checks, the SQL of each
lock call and the bookkeeping of a lock's holds. The driver modules
(:mod:`pg_named_locks.psycopg`, :mod:`pg_named_locks.sqlalchemy`) render the SQL with
their placeholder style and run it, through the steps of :mod:`pg_named_locks._session`.
The package's public names are listed in :mod:`pg_named_locks` (``__init__``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Dict, Optional, Sequence, Union

#: One lock name, or a sequence of names locked together, all or nothing.
Names = Union[str, Sequence[str]]
#: A duration: seconds (int or float) or a :class:`datetime.timedelta`.
Seconds = Union[float, int, timedelta]


def _digest(name: str) -> bytes:
    if not isinstance(name, str):
        raise TypeError(f"a lock name is a str, not {type(name).__name__}")
    # The server hashes the name's UTF-8 form in every database, whatever its encoding.
    return hashlib.md5(name.encode("utf-8")).digest()


def lock_key(name: str) -> int:
    """The bigint key the server locks for ``name``: its ``named_lock_key(name)``.

    The first 8 bytes of the md5 of the name's UTF-8 form, read as a signed big-endian
    64-bit integer. A client that calls ``pg_advisory_lock(lock_key(name))`` takes the
    very same lock as ``lock_named(name)``, so code that still locks by key and code
    that locks by name exclude each other.

    >>> lock_key("")
    -3162216497309240828
    """
    return int.from_bytes(_digest(name)[:8], "big", signed=True)


def lock_key32(name: str) -> int:
    """The integer key of ``name`` in the two-key space: its ``named_lock_key32(name)``.

    The first 4 bytes of the md5 of the name's UTF-8 form, signed big-endian. The
    server's pair locks ``lock_pair(namespace, name)`` are
    ``pg_advisory_lock(lock_key32(namespace), lock_key32(name))``.

    >>> lock_key32("")
    -736260903
    """
    return int.from_bytes(_digest(name)[:4], "big", signed=True)


class NamedLockError(Exception):
    """Base class of the exceptions this package raises itself (server errors arrive as
    the driver's exceptions; :func:`sqlstate` reads their SQLSTATE)."""


class LockNotAcquired(NamedLockError):
    """A non-blocking or timed attempt made in a ``with`` / ``async with`` statement did
    not get the lock: another session holds it (or a conflicting mode of it)."""

    def __init__(self, name: Optional[Names]) -> None:
        self.name = name
        super().__init__(f"lock {name!r} was not acquired: another session holds it")


class LockLost(NamedLockError):
    """A lock this object held is gone without a release: its connection was lost or
    closed (the server releases every lock of a session that ends; a lease that ran
    out without renewal ends the session), or it was unlocked behind the object's back.

    Available as ``lock.lost`` after the fact; raised by a ``with`` statement whose
    body completed normally while the lock was lost, because that body did not run
    under the lock to the end. The underlying error, if any, is ``__cause__``.
    """

    def __init__(self, name: Optional[Names], reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"lock {name!r} was lost: {reason}")


def sqlstate(exc: BaseException) -> Optional[str]:
    """The SQLSTATE of a database error, or None.

    Works for psycopg errors (``exc.sqlstate``), asyncpg errors and SQLAlchemy's
    ``DBAPIError`` wrapping either (``exc.orig``). The ones the lock calls raise:
    ``22004`` NULL name, ``22023`` empty name, negative timeout or a lease under 1 s,
    ``55P03`` ``lock_timeout``, ``57014`` statement timeout or cancel, ``40P01``
    deadlock, ``53400`` the per-session cap, ``57P01`` a session ended by the server
    (its lease ran out), ``25006`` a fenced call on a hot standby.
    """
    for candidate in (getattr(exc, "orig", None), exc):
        if candidate is None:
            continue
        for attr in ("sqlstate", "pgcode"):
            value = getattr(candidate, attr, None)
            if isinstance(value, str) and value:
                return value
    return None


def check_blocking(blocking: bool, timeout: Optional[Seconds]) -> None:
    if not blocking and timeout is not None:
        raise ValueError("timeout applies to blocking=True only")


def to_interval(value: Seconds, what: str) -> timedelta:
    """Seconds or a timedelta as a timedelta (the drivers send it as an ``interval``)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be seconds (int or float) or a timedelta, not {type(value).__name__}")
    return timedelta(seconds=value)


# -- the SQL of a lock call ------------------------------------------------------------
#
# Templates name their parameters {name}, {timeout} and {lease}; `render` turns them into
# the driver's placeholders (psycopg: %(name)s, SQLAlchemy text(): :name). Every
# parameter is cast, so the server picks the right overload whatever type the driver
# sends, and a None name reaches the server, which raises 22004 instead of locking
# nothing.


def render(template: str, placeholder: Callable[[str], str]) -> str:
    return template.format(name=placeholder("name"), timeout=placeholder("timeout"), lease=placeholder("lease"))


@dataclass(frozen=True)
class LockCall:
    """One acquire: ``sql`` takes the lock; it returns the fencing token (NULL: not
    acquired) when ``returns_token``, else a boolean. ``then_token``, run only after a
    successful ``sql``, returns ``(token, released)``: the token of a leased hold."""

    sql: str
    params: Dict[str, Any]
    returns_token: bool
    then_token: Optional[str] = None


class Target:
    """What one lock object locks -- one name or a set of names, in one mode and scope --
    and the SQL functions that do it."""

    def __init__(
        self,
        name: Optional[Names],
        *,
        shared: bool,
        xact: bool,
        fenced: bool,
        lease: Optional[Seconds] = None,
    ) -> None:
        if isinstance(name, (bytes, bytearray)):
            raise TypeError("a lock name is a str (the server hashes its UTF-8 form), not bytes")
        if isinstance(name, str) or name is None:
            self.many = False
            self.param: Any = name
            self.arg = "CAST({name} AS text)"
            self.base = "named_shared" if shared else "named"
        else:
            if shared:
                raise ValueError("shared mode is for one name: the server's _many functions are exclusive")
            self.many = True
            self.param = list(name)
            self.arg = "CAST({name} AS text[])"
            self.base = "many"
        if lease is not None and (xact or shared or self.many):
            raise ValueError("only an exclusive session lock on one name can be leased")
        self.name: Optional[Names] = name
        self.shared = shared
        self.xact = xact
        # Fenced grants are exclusive and for one name; a shared or many-name lock has no token.
        self.fenced = bool(fenced) and not shared and not self.many
        self.lease = None if lease is None else to_interval(lease, "lease")
        self.distinct = len(set(self.param)) if self.many else 1

    @property
    def renew_interval(self) -> Optional[float]:
        """Seconds between two renewals of the lease: a third of its length."""
        return None if self.lease is None else self.lease.total_seconds() / 3

    def lock_call(self, blocking: bool, timeout: Optional[Seconds]) -> LockCall:
        """The SQL of ``acquire(blocking, timeout)``."""
        check_blocking(blocking, timeout)
        params: Dict[str, Any] = {"name": self.param}
        if timeout is not None:
            params["timeout"] = to_interval(timeout, "timeout")
        arg = self.arg
        if self.lease is not None:
            params["lease"] = self.lease
            # lock_named_lease waits like lock_named; a 0 timeout is a try.
            if not blocking:
                params["timeout"] = timedelta(0)
            tail = ", CAST({timeout} AS interval)" if "timeout" in params else ""
            sql = f"SELECT lock_named_lease({arg}, CAST({{lease}} AS interval){tail})"
            then = None
            if self.fenced:
                # The lease is taken on a plain hold; a re-entrant fenced try (it cannot
                # fail: the lock is ours) gives that hold its token, and the unlock gives
                # back the extra hold it took. MATERIALIZED: the token comes first.
                then = (
                    f"WITH t AS MATERIALIZED (SELECT try_lock_named_fenced({arg}) AS token) "
                    f"SELECT t.token, CASE WHEN t.token IS NOT NULL THEN unlock_named({arg}) END FROM t"
                )
            return LockCall(sql, params, returns_token=False, then_token=then)
        scope = "xact_lock_" if self.xact else "lock_"
        if self.fenced:
            fn = f"{scope}named_fenced"
            if not blocking:
                return LockCall(f"SELECT try_{fn}({arg})", params, returns_token=True)
            if timeout is None:
                return LockCall(f"SELECT {fn}({arg})", params, returns_token=True)
            return LockCall(f"SELECT {fn}({arg}, CAST({{timeout}} AS interval))", params, returns_token=True)
        fn = scope + self.base
        if not blocking:
            return LockCall(f"SELECT try_{fn}({arg})", params, returns_token=False)
        if timeout is None:
            # The waiting variants return void: select a constant from them instead.
            return LockCall(f"SELECT true FROM {fn}({arg})", params, returns_token=False)
        return LockCall(f"SELECT {fn}({arg}, CAST({{timeout}} AS interval))", params, returns_token=False)

    def unlock_sql(self) -> str:
        """Release one hold: a boolean (one name) or the number of names released."""
        return f"SELECT unlock_{self.base}({self.arg})"

    def released(self, result: Any) -> bool:
        """Whether the unlock's result means the server released what we held."""
        if self.many:
            return bool(result == self.distinct)
        return bool(result)

    def renew_sql(self) -> str:
        return f"SELECT named_lock_renew({self.arg})"

    def params(self) -> Dict[str, Any]:
        return {"name": self.param}


def acquired_from(call: LockCall, value: Any) -> bool:
    """Whether the first statement of ``call`` took the lock."""
    return value is not None if call.returns_token else bool(value)


class HoldState:
    """The bookkeeping every session-lock class shares: how many holds this object has,
    the current token, and why it lost its lock if it did."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.holds = 0
        self.token: Optional[int] = None
        self.lost: Optional[LockLost] = None
        self.renew_error: Optional[BaseException] = None

    def granted(self, token: Optional[int]) -> None:
        if self.holds == 0:
            self.token = None
        self.holds += 1
        self.lost = None
        if token is not None:
            self.token = token

    @property
    def current_token(self) -> Optional[int]:
        """The token of the current hold: None when nothing is held."""
        return self.token if self.holds > 0 else None

    def released_one(self) -> None:
        self.holds -= 1
        if self.holds == 0:
            self.token = None

    def forget(self) -> None:
        """Nothing is held any more, and that is no loss: the caller closed the
        connection on purpose (after a failed release) and gets the error instead."""
        self.holds = 0
        self.token = None

    def lose(self, reason: str, cause: Optional[BaseException] = None) -> None:
        """The lock is gone (connection lost, lease expired, unlocked behind our back)."""
        if self.holds > 0:
            lost = LockLost(self.target.name, reason)
            lost.__cause__ = cause
            self.lost = lost
        self.holds = 0
        self.token = None

