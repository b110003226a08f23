"""Named locks for SQLAlchemy 2 asyncio (asyncpg, or psycopg's async driver).

Install with ``pip install 'pg-named-locks[sqlalchemy]'`` (SQLAlchemy[asyncio], asyncpg).

The classes have the shape of the usual SQLAlchemy advisory-lock helpers, but they lock
by *name*: the ``pg_named_locks`` extension hashes the name in the server, remembers it,
and shows the lock by name in ``advisory_locks_v`` and ``named_lock_stats``.

* :class:`SessionLock` -- held by a database *connection* until released or until the
  connection closes; survives COMMIT and ROLLBACK. For singleton jobs and cron tasks.
* :class:`XactLock` -- taken inside the caller's transaction and released by the server
  at COMMIT or ROLLBACK; there is nothing to release. For consistency around updates,
  and the one kind that works behind a transaction-mode pooler.
* :func:`advisory_lock` -- ``async with`` around a :class:`SessionLock`, yielding whether
  it was acquired.

Why session locks pin a connection
----------------------------------
A session lock belongs to one server connection. An ``AsyncSession`` hands its
connection back to the pool at every commit or rollback, and its next statement may run
on another one. A session lock taken with ``session.execute("SELECT
pg_advisory_lock(...)")`` therefore stays behind on a pooled connection after
``session.commit()`` -- held by nobody's code, until that connection is closed -- and
the later unlock may run on a different connection, where it fails. So
:class:`SessionLock` keeps one connection checked out for the lock's lifetime:

* given an ``AsyncEngine`` (or an ``AsyncSession``, whose engine it uses), it checks out
  a dedicated connection on the first acquire and returns it to the pool after the last
  release, unlocked; if anything goes wrong in between it *invalidates* that connection,
  so the server ends the session and no lock can be left behind;
* given an ``AsyncConnection``, it uses that connection; keep it open (checked out)
  until the lock is released.

Either way it leaves no transaction open on its own account, so a long job does not
hold a connection "idle in transaction": a dedicated connection runs in autocommit
while the lock has it (the pool resets that when it goes back); on a connection you
pass in, a lock call made outside a transaction is committed right away, and a
transaction you had open is left alone.

Cancelling a waiting ``acquire`` (``task.cancel()``, ``asyncio.wait_for``) makes
SQLAlchemy invalidate the connection: the server session ends, and with it *every*
session lock that connection held. On a dedicated connection that is exactly right; on
a connection you passed in, prefer ``acquire(timeout=...)``, which the server ends
cleanly.

Fencing tokens and leases work as in :mod:`pg_named_locks.psycopg`: ``lock.token`` for
exclusive one-name locks, ``lease=seconds`` renewed by an asyncio task every third of
the lease. A leased lock with automatic renewal needs an engine or session (a dedicated
connection): asyncpg runs one statement at a time per connection, so a renewal on a
connection you use yourself could collide with your own statements.

Errors from the server arrive as SQLAlchemy ``DBAPIError`` subclasses; :func:`sqlstate`
returns their SQLSTATE.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Dict, Optional, Union

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from ._core import (
    LockLost,
    LockNotAcquired,
    NamedLockError,
    Names,
    Seconds,
    check_blocking,
    lock_key,
    lock_key32,
    render,
    sqlstate,
)
from ._session import AsyncSessionSteps, Steps, XactSteps, held, run_async

__all__ = [
    "LockLost",
    "LockNotAcquired",
    "NamedLockError",
    "SessionLock",
    "XactLock",
    "advisory_lock",
    "async_url",
    "lock_key",
    "lock_key32",
    "sqlstate",
]

Bind = Union[AsyncConnection, AsyncEngine, AsyncSession]


def async_url(dsn: str) -> str:
    """``postgresql://…`` (libpq style) → ``postgresql+asyncpg://…`` for
    ``create_async_engine``; other URLs are returned unchanged."""
    for prefix in ("postgresql://", "postgres://"):
        if dsn.startswith(prefix):
            return "postgresql+asyncpg://" + dsn[len(prefix) :]
    return dsn


def _placeholder(param: str) -> str:
    return f":{param}"


def _text(template: str) -> Any:
    return text(render(template, _placeholder))


def _scalar(bind: Union[AsyncConnection, AsyncSession], template: str, params: Dict[str, Any]) -> Steps[Any]:
    """Step: the first column of the one row of a SQL template."""
    result = yield bind.execute(_text(template), params)
    return result.scalar()


def _driver_closed(driver: Any) -> bool:
    """Whether the DBAPI driver's own connection is closed: asyncpg notices a socket the
    server closed as soon as the event loop reads it."""
    if driver is None:
        return False
    is_closed = getattr(driver, "is_closed", None)
    if callable(is_closed):
        return bool(is_closed())
    return bool(getattr(driver, "closed", False))


class SessionLock(AsyncSessionSteps[AsyncConnection]):
    """A session-level named lock: held until :meth:`release` or until the connection ends.

    ``SessionLock(bind, name, *, shared=False, blocking=True, timeout=None, lease=None,
    auto_renew=True, fenced=True)``

    * ``bind``: an ``AsyncEngine`` or ``AsyncSession`` (a dedicated connection is checked
      out while the lock is held) or an ``AsyncConnection`` (used as is; keep it open).
    * ``name``: the lock name, or a sequence of names locked all or nothing, in the
      server's deadlock-free order (``lock_many``; exclusive only, no token).
    * ``shared``: take the shared mode (many shared holders, no exclusive one).
    * ``blocking``, ``timeout``: how ``async with lock:`` acquires; it raises
      :class:`LockNotAcquired` when that fails.
    * ``lease``: seconds or a timedelta (at least 1 s): a leased lock, renewed every
      ``lease / 3`` by an asyncio task while held (``auto_renew=False``: call
      :meth:`renew` yourself).
    * ``fenced``: take exclusive one-name locks with the fenced functions, so that
      :attr:`token` is the grant's fencing token (``False`` on a hot standby).

    Re-entrant like the server's locks: every successful :meth:`acquire` needs one
    :meth:`release`.
    """

    # SQLAlchemy invalidates a connection on a cancel or a broken link: its server
    # session ends, and every session lock it held goes with it.
    _DROPPED = "the connection was invalidated"

    def __init__(
        self,
        bind: Bind,
        name: Names,
        *,
        shared: bool = False,
        blocking: bool = True,
        timeout: Optional[Seconds] = None,
        lease: Optional[Seconds] = None,
        auto_renew: bool = True,
        fenced: bool = True,
    ) -> None:
        check_blocking(blocking, timeout)
        if isinstance(bind, AsyncSession):
            session_bind = bind.bind
            if session_bind is None:
                raise TypeError("the AsyncSession has no single bind; pass an AsyncEngine or AsyncConnection")
            bind = session_bind
        if not isinstance(bind, (AsyncConnection, AsyncEngine)):
            raise TypeError(f"expected AsyncEngine, AsyncSession or AsyncConnection, got {type(bind).__name__}")
        super().__init__(
            name, shared=shared, blocking=blocking, timeout=timeout, lease=lease, auto_renew=auto_renew, fenced=fenced
        )
        if lease is not None and auto_renew and isinstance(bind, AsyncConnection):
            raise ValueError(
                "a leased lock renewed automatically needs an AsyncEngine or AsyncSession (a dedicated connection);"
                " on your own AsyncConnection pass auto_renew=False and call renew()"
            )
        self._bind = bind
        self._conn = bind if isinstance(bind, AsyncConnection) else None
        self._driver: Any = None

    @property
    def name(self) -> Names:
        return self._target.name  # type: ignore[return-value]

    @property
    def connection(self) -> Optional[AsyncConnection]:
        """The connection the lock lives on (None while a pooled lock is not held)."""
        return self._conn

    @property
    def is_acquired(self) -> bool:
        """Whether this object holds the lock (at least once); False once its connection
        is known to be lost (invalidated, closed, or closed by the server)."""
        st = self._state
        if st.holds > 0 and not self._alive():
            if self._busy():
                return False  # a call in progress deals with it
            st.lose("the connection was lost")
            self._stop_renewal()
        return st.holds > 0

    @property
    def token(self) -> Optional[int]:
        """The fencing token of the current hold; None when not held, shared, many names
        or ``fenced=False``."""
        return self._state.current_token

    @property
    def lost(self) -> Optional[LockLost]:
        """Why the lock was lost without a release (a :class:`LockLost`), else None."""
        return self._state.lost

    # -- the SQLAlchemy I/O ----------------------------------------------------------

    def _owns(self) -> bool:
        return isinstance(self._bind, AsyncEngine)

    def _alive(self) -> bool:
        conn = self._conn
        return conn is not None and not self._gone(conn)

    def _gone(self, conn: AsyncConnection) -> bool:
        return conn.closed or conn.invalidated or _driver_closed(self._driver)

    def _broken(self, conn: AsyncConnection) -> bool:
        return self._gone(conn)

    def _dropped(self, conn: AsyncConnection) -> bool:
        return conn.invalidated or conn.closed

    def _lost_before_renewal(self, conn: AsyncConnection) -> bool:
        return True

    def _begins(self, conn: AsyncConnection) -> bool:
        return not conn.in_transaction()

    def _value(self, conn: AsyncConnection, template: str, params: Dict[str, Any]) -> Steps[Any]:
        return _scalar(conn, template, params)

    def _drop_connection(self, invalidate: bool) -> Steps[None]:
        conn, self._conn = self._conn, None
        self._driver = None
        if conn is None:
            return
        if invalidate:
            # Closing the server session releases every session lock it had; this is the
            # one way to be sure nothing is left behind after an error or a cancel.
            try:
                yield conn.invalidate()
            except Exception:
                pass
        try:
            yield conn.close()
        except Exception:
            pass

    def _discard(self) -> Steps[None]:
        if self._owns():
            yield from self._drop_connection(invalidate=True)

    def _give_back(self) -> Steps[None]:
        if self._owns():
            yield from self._drop_connection(invalidate=False)

    def _checkout(self) -> Steps[AsyncConnection]:
        if self._conn is None:
            assert isinstance(self._bind, AsyncEngine)
            conn = yield self._bind.connect()
            try:
                # Autocommit while the lock has it: each lock call and renewal is one
                # statement, never a moment "idle in transaction". The pool resets the
                # isolation level when the connection goes back.
                yield conn.execution_options(isolation_level="AUTOCOMMIT")
            except BaseException:
                yield conn.close()
                raise
            self._conn = conn
        conn = self._conn
        if self._state.holds == 0:
            # (again) on every first acquire: SQLAlchemy may have reconnected a given one
            try:
                self._driver = (yield conn.get_raw_connection()).driver_connection
            except Exception:
                self._driver = None
        return conn

    # -- lock and unlock -----------------------------------------------------------------

    async def acquire(self, blocking: bool = True, timeout: Optional[Seconds] = None) -> bool:
        """Take the lock.

        * ``blocking=True, timeout=None``: wait as long as it takes (the server's
          ``lock_timeout``, ``statement_timeout``, cancel and deadlock detection apply and
          raise); returns True.
        * ``blocking=True, timeout=seconds | timedelta``: wait at most that long; False
          when the time ran out (nothing is then held). 0 is a plain try.
        * ``blocking=False``: never wait; False when someone else holds it.
        """
        return await super().acquire(blocking, timeout)

    async def release(self) -> bool:
        """Release one hold. True when the server released it. False when this object
        does not hold the lock, or has lost it (:attr:`lost` says why: the connection was
        lost, or it was unlocked behind the object's back). A pooled connection goes back
        to the pool after the last release, or is invalidated if the release failed."""
        return await super().release()

    async def renew(self) -> bool:
        """Start the lease again at its length (``named_lock_renew``); False when the lock
        is not held or was lost. Only for leased locks; automatic unless
        ``auto_renew=False``."""
        return await super().renew()


class XactLock(XactSteps[Union[AsyncSession, AsyncConnection]]):
    """A transaction-level named lock: taken in the caller's transaction and released by
    the server at COMMIT or ROLLBACK. There is no release method, on purpose: ending the
    transaction is the release.

    ``XactLock(session_or_connection, name, *, shared=False, fenced=True)``; ``name`` may
    be a sequence of names, locked all or nothing in the server's deadlock-free order
    (``xact_lock_many``; exclusive only) -- e.g. both accounts of a funds transfer.

    Runs on the given ``AsyncSession`` or ``AsyncConnection`` (both begin a transaction
    by themselves if none is open), so it works behind a transaction-mode pooler too.
    """

    def __init__(
        self, bind: Union[AsyncSession, AsyncConnection], name: Names, *, shared: bool = False, fenced: bool = True
    ) -> None:
        if not isinstance(bind, (AsyncSession, AsyncConnection)):
            raise TypeError("a transaction lock needs the AsyncSession or AsyncConnection of the transaction")
        super().__init__(bind, name, shared=shared, fenced=fenced)

    @property
    def token(self) -> Optional[int]:
        """The fencing token of the last successful acquire (exclusive, one name, fenced),
        valid until that transaction ends; else None."""
        return self._token

    def _value(self, bind: Union[AsyncSession, AsyncConnection], template: str, params: Dict[str, Any]) -> Steps[Any]:
        return _scalar(bind, template, params)

    async def acquire(self, blocking: bool = True, timeout: Optional[Seconds] = None) -> bool:
        """Take the lock in the current transaction; same arguments and results as
        :meth:`SessionLock.acquire`. A False result leaves nothing held; an error aborts
        the transaction, as any failed statement does."""
        return await run_async(self._acquire_steps(self._target.lock_call(blocking, timeout)))


@asynccontextmanager
async def advisory_lock(
    bind: Bind,
    name: Names,
    blocking: bool = True,
    timeout: Optional[Seconds] = None,
    *,
    shared: bool = False,
    lease: Optional[Seconds] = None,
) -> AsyncIterator[bool]:
    """``async with advisory_lock(engine, "daily-report-job", blocking=False) as acquired:``

    Holds a :class:`SessionLock` for the body and yields whether it was acquired (the
    body runs either way: test the flag). The lock is released afterwards, also when the
    body raises. Raises :class:`LockLost` at the end of a body that completed while the
    lock was lost.
    """
    lock = SessionLock(bind, name, shared=shared, lease=lease, fenced=False)
    async with held(lock, blocking, timeout) as acquired:
        yield acquired
