"""Named PostgreSQL advisory locks for SQLAlchemy 2 (asyncio, asyncpg).

The lock classes have the shape of the usual SQLAlchemy advisory-lock helpers, but they
lock by *name*: the ``pg_named_locks`` extension hashes the name in the server, remembers
it, and shows the lock by name in ``advisory_locks_v`` and ``named_lock_stats``. No
client has to invent (or agree on) a name-to-number mapping.

Two kinds of lock:

* :class:`SessionLock` -- held by a database *connection* until released or until the
  connection closes; survives COMMIT and ROLLBACK. For singleton jobs and cron tasks.
* :class:`XactLock` -- taken inside the caller's transaction and released by the server
  at COMMIT or ROLLBACK; there is nothing to release. For consistency around updates.

and :func:`advisory_lock`, an ``async with`` helper around :class:`SessionLock` that
raises :class:`LockNotAcquired` when a non-blocking or timed attempt fails.

Why session locks pin a connection
----------------------------------
A session lock belongs to one server connection. An :class:`~sqlalchemy.ext.asyncio.AsyncSession`
hands its connection back to the pool at every commit or rollback, and its next
statement may run on another one. A session lock taken with
``session.execute("SELECT pg_advisory_lock(...)")`` therefore stays behind on a pooled
connection after ``session.commit()`` -- held by nobody's code, until that connection is
closed -- and the later unlock may run on a different connection, where it fails with
"you don't own a lock". So :class:`SessionLock` keeps one connection
checked out for the lock's lifetime:

* given an ``AsyncEngine`` (or an ``AsyncSession``, whose engine it uses), it checks out
  a dedicated connection on the first acquire and returns it to the pool after the last
  release; if anything goes wrong in between it *invalidates* that connection, so the
  server ends the session and no lock can be left behind;
* given an ``AsyncConnection``, it uses that connection; keep it open (checked out) until
  the lock is released.

Either way it leaves no transaction open on its own account: when the connection was not
in a transaction it commits right after the lock call, so a long job does not hold a
connection "idle in transaction". A transaction the caller had open is left alone.

Cancelling a waiting ``acquire`` (``task.cancel()``, ``asyncio.wait_for``) makes SQLAlchemy
invalidate the connection: the server session ends, and with it *every* session lock
that connection held. On a dedicated connection that is exactly right; on a connection
you passed in, prefer ``acquire(timeout=...)``, which the server ends cleanly.

Errors from the server arrive as SQLAlchemy ``DBAPIError`` subclasses; :func:`sqlstate`
returns their SQLSTATE: ``22004`` NULL name, ``22023`` empty name or negative timeout,
``55P03`` ``lock_timeout``, ``57014`` statement timeout or cancel, ``40P01`` deadlock,
``53400`` the per-session cap.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from types import TracebackType
from typing import Any, Union

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

__all__ = [
    "LockNotAcquired",
    "SessionLock",
    "XactLock",
    "advisory_lock",
    "async_url",
    "lock_key",
    "lock_key32",
    "sqlstate",
]

Bind = Union[AsyncConnection, AsyncEngine, AsyncSession]
Names = Union[str, Sequence[str]]
Timeout = Union[float, int, timedelta, None]


class LockNotAcquired(Exception):
    """A non-blocking or timed attempt did not get the lock (someone else holds it)."""

    def __init__(self, name: Names):
        self.name = name
        super().__init__(f"lock {name!r} is held by another session")


def lock_key(name: str) -> int:
    """The bigint key the extension locks for ``name`` (its ``named_lock_key``).

    The first 8 bytes of md5(name), signed big-endian. Clients that still call
    ``pg_advisory_lock(key)`` with this key take the very same lock as ``lock_named(name)``.
    """
    return int.from_bytes(hashlib.md5(name.encode()).digest()[:8], "big", signed=True)


def lock_key32(name: str) -> int:
    """The int key of ``name`` in the two-key space (``named_lock_key32``)."""
    return int.from_bytes(hashlib.md5(name.encode()).digest()[:4], "big", signed=True)


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error raised through SQLAlchemy/asyncpg, else None."""
    orig = getattr(exc, "orig", None) or exc
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)


def async_url(dsn: str) -> str:
    """``postgresql://…`` (libpq style) → ``postgresql+asyncpg://…`` for create_async_engine."""
    for prefix in ("postgresql://", "postgres://"):
        if dsn.startswith(prefix):
            return "postgresql+asyncpg://" + dsn[len(prefix):]
    return dsn


def _interval(timeout: Timeout) -> timedelta:
    return timeout if isinstance(timeout, timedelta) else timedelta(seconds=timeout)


class _Target:
    """One name or a set of names, and the SQL functions that lock them."""

    def __init__(self, name: Names, shared: bool):
        if isinstance(name, str) or name is None:
            # None goes to the server on purpose: it raises 22004 rather than locking nothing.
            self.many = False
            self.param: Any = name
            self.arg = "CAST(:name AS text)"
            self.base = "named_shared" if shared else "named"
        else:
            if shared:
                raise ValueError("shared mode is for one name; the _many functions are exclusive")
            self.many = True
            self.param = list(name)
            self.arg = "CAST(:name AS text[])"
            self.base = "many"
        self.name = name
        self.distinct = len(set(self.param)) if self.many else 1

    def lock_sql(self, xact: bool, blocking: bool, timeout: Timeout) -> tuple[str, dict[str, Any]]:
        fn = ("xact_lock_" if xact else "lock_") + self.base
        params: dict[str, Any] = {"name": self.param}
        if not blocking:
            if timeout is not None:
                raise ValueError("timeout applies to blocking=True only")
            return f"SELECT try_{fn}({self.arg})", params
        if timeout is None:
            # The waiting variants return void: select a constant from them instead.
            return f"SELECT true FROM {fn}({self.arg})", params
        params["timeout"] = _interval(timeout)
        return f"SELECT {fn}({self.arg}, CAST(:timeout AS interval))", params

    def unlock_sql(self) -> str:
        return f"SELECT unlock_{self.base}({self.arg})"


async def _quiet_rollback(conn: AsyncConnection) -> None:
    # Best effort after an error: the original exception is the one worth raising.
    try:
        await conn.rollback()
    except Exception:
        pass


class SessionLock:
    """A session-level named lock: held until :meth:`release` or until the connection ends.

    ``SessionLock(bind, name, *, shared=False)``

    * ``bind``: an ``AsyncEngine`` or ``AsyncSession`` (a dedicated connection is checked
      out while the lock is held) or an ``AsyncConnection`` (used as is; keep it open).
      See the module documentation for why.
    * ``name``: the lock name, or a sequence of names locked all-or-nothing, in the
      server's deadlock-free order (``lock_many``; exclusive only).
    * ``shared``: take the shared mode (many shared holders, no exclusive one).

    Re-entrant like the server's locks: every successful :meth:`acquire` needs one
    :meth:`release`. ``async with SessionLock(...)`` waits for the lock and releases it on
    exit.
    """

    def __init__(self, bind: Bind, name: Names, *, shared: bool = False):
        if isinstance(bind, AsyncSession):
            engine = bind.bind
            if engine is None:
                raise TypeError("the AsyncSession has no single bind; pass an AsyncEngine or AsyncConnection")
            bind = engine
        if not isinstance(bind, (AsyncConnection, AsyncEngine)):
            raise TypeError(f"expected AsyncEngine, AsyncSession or AsyncConnection, got {type(bind).__name__}")
        self._bind = bind
        self._target = _Target(name, shared)
        self._conn: AsyncConnection | None = bind if isinstance(bind, AsyncConnection) else None
        self._holds = 0

    @property
    def name(self) -> Names:
        return self._target.name

    @property
    def is_acquired(self) -> bool:
        """Whether this object holds the lock (at least once)."""
        return self._holds > 0

    @property
    def connection(self) -> AsyncConnection | None:
        """The connection the lock lives on (None while a pooled lock is not held)."""
        return self._conn

    def _owns_connection(self) -> bool:
        return isinstance(self._bind, AsyncEngine)

    async def _drop_connection(self, invalidate: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if invalidate:
            # Closing the server session releases every session lock it had; this is the
            # one way to be sure nothing is left behind after an error or a cancel.
            try:
                await conn.invalidate()
            except Exception:
                pass
        await conn.close()

    async def acquire(self, blocking: bool = True, timeout: Timeout = None) -> bool:
        """Take the lock.

        * ``blocking=True, timeout=None``: wait as long as it takes (the server's
          ``lock_timeout``, ``statement_timeout``, cancel and deadlock detection apply and
          raise); returns True.
        * ``blocking=True, timeout=seconds | timedelta``: wait at most that long; False
          when the time ran out (nothing is then held). 0 is a plain try.
        * ``blocking=False``: never wait; False when someone else holds it.
        """
        sql, params = self._target.lock_sql(False, blocking, timeout)
        if self._conn is None:
            self._conn = await self._bind.connect()  # type: ignore[union-attr]
        conn = self._conn
        began = not conn.in_transaction()
        try:
            got = bool((await conn.execute(text(sql), params)).scalar())
            if began:
                await conn.commit()
        except BaseException:
            if conn.invalidated:
                # SQLAlchemy invalidates a connection on a cancel or a broken link: its
                # server session ends, and every session lock it held goes with it.
                self._holds = 0
            if self._owns_connection() and self._holds == 0:
                await self._drop_connection(invalidate=True)
            elif began:
                # also clears an invalidated connection's pending transaction
                await _quiet_rollback(conn)
            raise
        if got:
            self._holds += 1
        elif self._owns_connection() and self._holds == 0:
            await self._drop_connection(invalidate=False)
        return got

    async def release(self) -> bool:
        """Release one hold. True when the server released it; False when this object
        does not hold the lock or the server says the connection no longer has it
        (then the object forgets it too). A pooled connection goes back to the pool
        after the last release, or is closed if the release failed."""
        if self._holds == 0 or self._conn is None:
            return False
        conn = self._conn
        began = not conn.in_transaction()
        try:
            result = (await conn.execute(text(self._target.unlock_sql()), {"name": self._target.param})).scalar()
            if began:
                await conn.commit()
        except BaseException:
            if self._owns_connection() or conn.invalidated:
                self._holds = 0
            if self._owns_connection():
                await self._drop_connection(invalidate=True)
            elif began:
                # also clears an invalidated connection's pending transaction
                await _quiet_rollback(conn)
            raise
        released = (result == self._target.distinct) if self._target.many else bool(result)
        self._holds = self._holds - 1 if released else 0
        if self._holds == 0 and self._owns_connection():
            # The server's locks no longer match what this object took, so the
            # connection was used behind its back: do not hand it to the next user.
            await self._drop_connection(invalidate=not released)
        return released

    async def __aenter__(self) -> "SessionLock":
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.is_acquired:
            await self.release()


class XactLock:
    """A transaction-level named lock: taken in the caller's transaction and released by
    the server at COMMIT or ROLLBACK. There is no release method, on purpose: ending the
    transaction is the release.

    ``XactLock(session_or_connection, name, *, shared=False)``; ``name`` may be a sequence
    of names, locked all-or-nothing in the server's deadlock-free order
    (``xact_lock_many``; exclusive only) -- e.g. both accounts of a funds transfer.

    Runs on the given ``AsyncSession`` or ``AsyncConnection`` (both begin a transaction
    by themselves if none is open), so it works behind a transaction-mode pooler too.
    """

    def __init__(self, bind: AsyncSession | AsyncConnection, name: Names, *, shared: bool = False):
        if not isinstance(bind, (AsyncSession, AsyncConnection)):
            raise TypeError("a transaction lock needs the AsyncSession or AsyncConnection of the transaction")
        self._bind = bind
        self._target = _Target(name, shared)

    @property
    def name(self) -> Names:
        return self._target.name

    async def acquire(self, blocking: bool = True, timeout: Timeout = None) -> bool:
        """Take the lock in the current transaction; same arguments and results as
        :meth:`SessionLock.acquire`. A False result leaves nothing held; an error aborts
        the transaction, as any failed statement does."""
        sql, params = self._target.lock_sql(True, blocking, timeout)
        return bool((await self._bind.execute(text(sql), params)).scalar())


@asynccontextmanager
async def advisory_lock(
    bind: Bind,
    name: Names,
    blocking: bool = True,
    timeout: Timeout = None,
    *,
    shared: bool = False,
) -> AsyncIterator[SessionLock]:
    """``async with advisory_lock(engine, "daily-report-job", blocking=False): ...``

    Holds a :class:`SessionLock` for the body and releases it afterwards (also when the
    body raises). Raises :class:`LockNotAcquired` when ``blocking=False`` or ``timeout``
    was given and the lock was not obtained.
    """
    lock = SessionLock(bind, name, shared=shared)
    if not await lock.acquire(blocking=blocking, timeout=timeout):
        raise LockNotAcquired(name)
    try:
        yield lock
    finally:
        if lock.is_acquired:
            await lock.release()
