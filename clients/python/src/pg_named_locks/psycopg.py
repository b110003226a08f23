"""Named locks for psycopg 3, synchronous and asyncio.

Install with ``pip install 'pg-named-locks[psycopg]'`` (psycopg 3 and psycopg_pool).

=========================  =========================================================
synchronous                asyncio
=========================  =========================================================
:class:`SessionLock`       :class:`AsyncSessionLock`
:class:`XactLock`          :class:`AsyncXactLock`
:func:`advisory_lock`      :func:`async_advisory_lock`
=========================  =========================================================

A **session lock** is held by one server connection until released or until that
connection ends; it survives COMMIT and ROLLBACK. Give it:

* a connection pool (``psycopg_pool.ConnectionPool`` / ``AsyncConnectionPool``, or any
  object with ``getconn`` and ``putconn``): the lock checks out a *dedicated* connection
  on the first acquire (and runs it in autocommit while it has it) and gives it back
  after the last release, unlocked, its autocommit setting restored. If anything
  goes wrong in between it closes that connection instead (the server then releases
  every lock of the session), so a pooled connection never goes back holding a lock;
* a conninfo string (``"postgresql://app@db/app"``): a connection of its own, opened on
  the first acquire and closed after the last release;
* a ``psycopg.Connection`` / ``AsyncConnection``: used as it is; keep it open until the
  lock is released. A transaction you have open on it is left to you; otherwise each
  lock call is committed at once, so a long job is ``idle``, not ``idle in transaction``.

A **transaction lock** is taken in the connection's current transaction and released by
the server at COMMIT or ROLLBACK; it has no release.

Fencing tokens: an exclusive lock on one name is taken with the server's fenced
functions, and ``lock.token`` is the grant's token (strictly larger than every token
handed out before; check it with ``named_lock_check(name, token)``). Shared and
many-name locks have no token. Pass ``fenced=False`` for plain grants (a hot standby,
where fenced calls raise ``25006``, or PostgreSQL 15/16 without
``shared_preload_libraries = 'pg_named_locks'``).

Leases: ``SessionLock(pool, name, lease=30)`` takes the lock with
``lock_named_lease(name, '30 s')`` and renews it every ``lease / 3`` from a daemon thread
(an asyncio task for :class:`AsyncSessionLock`) until released. If the process stops
renewing (it hangs, is paused, loses the network) the server ends the session within
about a second of the lease's end and the lock is free for others. ``lock.is_acquired``
then turns False and ``lock.lost`` says why; ``release()`` returns False.
"""

from __future__ import annotations

import asyncio
import inspect
import select
import threading
from contextlib import asynccontextmanager, contextmanager
from types import TracebackType
from typing import Any, AsyncIterator, Iterator, Optional, Protocol, Tuple, Type, Union

import psycopg
from psycopg import pq
from psycopg.rows import tuple_row

from ._core import (
    HoldState,
    LockLost,
    LockNotAcquired,
    NamedLockError,
    Names,
    Seconds,
    Target,
    acquired_from,
    lock_key,
    lock_key32,
    render,
    sqlstate,
)

__all__ = [
    "AsyncSessionLock",
    "AsyncXactLock",
    "LockLost",
    "LockNotAcquired",
    "NamedLockError",
    "SessionLock",
    "XactLock",
    "advisory_lock",
    "async_advisory_lock",
    "lock_key",
    "lock_key32",
    "sqlstate",
]


class Pool(Protocol):
    """What a session lock needs of a synchronous pool (``psycopg_pool.ConnectionPool``)."""

    def getconn(self, timeout: Optional[float] = None) -> psycopg.Connection[Any]: ...

    def putconn(self, conn: psycopg.Connection[Any]) -> None: ...


class AsyncPool(Protocol):
    """What an async session lock needs of a pool (``psycopg_pool.AsyncConnectionPool``)."""

    async def getconn(self, timeout: Optional[float] = None) -> psycopg.AsyncConnection[Any]: ...

    async def putconn(self, conn: psycopg.AsyncConnection[Any]) -> None: ...


SyncBind = Union[psycopg.Connection[Any], Pool, str]
AsyncBind = Union[psycopg.AsyncConnection[Any], AsyncPool, str]
AnyConnection = Union[psycopg.Connection[Any], psycopg.AsyncConnection[Any]]

_IDLE = pq.TransactionStatus.IDLE


def _placeholder(param: str) -> str:
    return f"%({param})s"


def _sql(template: str) -> str:
    return render(template, _placeholder)


def _begins(conn: AnyConnection) -> bool:
    """Whether a statement would open a transaction that the lock must end itself."""
    return not conn.autocommit and conn.info.transaction_status == _IDLE


def _poll_closed(pgconn: Any) -> bool:
    """Whether the server has closed this idle connection, found without blocking: a
    session the server ended (a lease that ran out, ``pg_terminate_backend``) sends its
    FATAL message and closes the socket, which libpq only notices when it reads."""
    try:
        fd = pgconn.socket
    except psycopg.Error:
        return True
    for _ in range(8):
        try:
            readable, _, _ = select.select([fd], [], [], 0)
        except (OSError, ValueError):
            return False  # cannot tell; the next statement will
        if not readable:
            return False
        try:
            pgconn.consume_input()
        except psycopg.Error:
            return True
        if pgconn.status == pq.ConnStatus.BAD:
            return True
    return False


def _peer_gone(conn: psycopg.Connection[Any]) -> bool:
    if conn.closed:
        return True
    # Only when nobody is using the connection: reading under a running query would
    # take its results.
    if not conn.lock.acquire(blocking=False):
        return False
    try:
        return _poll_closed(conn.pgconn)
    finally:
        conn.lock.release()


def _peer_gone_async(conn: psycopg.AsyncConnection[Any]) -> bool:
    if conn.closed:
        return True
    if conn.lock.locked():
        return False
    return _poll_closed(conn.pgconn)


def _check_blocking(blocking: bool, timeout: Optional[Seconds]) -> None:
    if not blocking and timeout is not None:
        raise ValueError("timeout applies to blocking=True only")


def _pool_methods(bind: Any) -> bool:
    return callable(getattr(bind, "getconn", None)) and callable(getattr(bind, "putconn", None))


# -- synchronous ---------------------------------------------------------------------


def _fetch(conn: psycopg.Connection[Any], template: str, params: Any) -> Tuple[Any, ...]:
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(_sql(template), params)
        row = cur.fetchone()
    assert row is not None
    return row


def _rollback_quietly(conn: psycopg.Connection[Any]) -> None:
    # Best effort after an error: the original exception is the one worth raising.
    try:
        conn.rollback()
    except Exception:
        pass


class SessionLock:
    """A session-level named lock: held until :meth:`release` or until the connection ends.

    ``SessionLock(bind, name, *, shared=False, blocking=True, timeout=None, lease=None,
    auto_renew=True, fenced=True)``

    * ``bind``: a pool (``psycopg_pool.ConnectionPool``), a conninfo string, or a
      ``psycopg.Connection`` (see the module documentation for the differences).
    * ``name``: the lock name, or a sequence of names locked all or nothing in the
      server's deadlock-free order (``lock_many``; exclusive only, no token).
    * ``shared``: the shared mode (many shared holders, no exclusive one); no token.
    * ``blocking``, ``timeout``: how ``with lock:`` acquires (as :meth:`acquire`); it
      raises :class:`LockNotAcquired` when that fails.
    * ``lease``: seconds or a timedelta (at least 1 s): a leased lock, renewed every
      ``lease / 3`` by a daemon thread while held (``auto_renew=False``: call
      :meth:`renew` yourself).
    * ``fenced``: take exclusive one-name locks with the fenced functions, so that
      :attr:`token` is the grant's fencing token.

    Re-entrant like the server's locks: every successful :meth:`acquire` needs one
    :meth:`release`. Thread-safe: the lock's own calls and its renewals are serialised.
    A leased lock on a connection you pass in should have that connection in autocommit
    (or be its only user): a renewal made outside a transaction commits the transaction
    its statement opened, which another thread's statement could have joined meanwhile.
    """

    def __init__(
        self,
        bind: SyncBind,
        name: Names,
        *,
        shared: bool = False,
        blocking: bool = True,
        timeout: Optional[Seconds] = None,
        lease: Optional[Seconds] = None,
        auto_renew: bool = True,
        fenced: bool = True,
    ) -> None:
        _check_blocking(blocking, timeout)
        self._target = Target(name, shared=shared, xact=False, fenced=fenced, lease=lease)
        self._state = HoldState(self._target)
        self._blocking = blocking
        self._timeout = timeout
        self._auto_renew = auto_renew
        self._given: Optional[psycopg.Connection[Any]] = None
        self._pool: Optional[Pool] = None
        self._conninfo: Optional[str] = None
        if isinstance(bind, psycopg.AsyncConnection):
            raise TypeError("an AsyncConnection needs AsyncSessionLock")
        if isinstance(bind, psycopg.Connection):
            self._given = bind
        elif isinstance(bind, str):
            self._conninfo = bind
        elif _pool_methods(bind):
            if inspect.iscoroutinefunction(bind.getconn):
                raise TypeError("an async pool needs AsyncSessionLock")
            self._pool = bind
        else:
            raise TypeError(
                f"expected a psycopg Connection, a connection pool or a conninfo string, got {type(bind).__name__}"
            )
        self._conn: Optional[psycopg.Connection[Any]] = self._given
        self._pool_autocommit = False
        self._mutex = threading.RLock()
        self._stop: Optional[threading.Event] = None
        self._renewer: Optional[threading.Thread] = None

    # -- state ----------------------------------------------------------------------

    @property
    def name(self) -> Names:
        """The lock's name (or names)."""
        return self._target.name  # type: ignore[return-value]

    @property
    def connection(self) -> Optional[psycopg.Connection[Any]]:
        """The connection the lock lives on (None while a pooled lock is not held)."""
        return self._conn

    @property
    def is_acquired(self) -> bool:
        """Whether this object holds the lock (at least once). Turns False when the
        connection is found lost: a closed socket is noticed here without a query."""
        st = self._state
        if st.holds == 0:
            return False
        if self._mutex.acquire(blocking=False):
            try:
                conn = self._conn
                if st.holds > 0 and conn is not None and _peer_gone(conn):
                    self._lose_locked("the connection was lost (the server ended the session)")
            finally:
                self._mutex.release()
        return st.holds > 0

    @property
    def token(self) -> Optional[int]:
        """The fencing token of the current hold; None when not held, shared, many names
        or ``fenced=False``."""
        return self._state.token if self._state.holds > 0 else None

    @property
    def lost(self) -> Optional[LockLost]:
        """Why the lock was lost without a release (a :class:`LockLost`), else None.
        Cleared by the next successful acquire."""
        return self._state.lost

    # -- connection handling -------------------------------------------------------------

    def _checkout(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            if self._pool is not None:
                conn = self._pool.getconn()
                # Autocommit while the lock has it: each lock call and renewal is one
                # statement, never a moment "idle in transaction"; restored at checkin.
                self._pool_autocommit = conn.autocommit
                try:
                    conn.autocommit = True
                except BaseException:
                    self._pool.putconn(conn)
                    raise
                self._conn = conn
            else:
                assert self._conninfo is not None
                self._conn = psycopg.connect(self._conninfo, autocommit=True)
        return self._conn

    def _checkin(self, discard: bool) -> None:
        """Give an owned connection back (to its pool, or close it); ``discard`` closes it
        first, which ends its server session and so every lock it held."""
        if self._given is not None:
            return
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if not discard and self._pool is not None and not conn.closed:
            try:
                conn.autocommit = self._pool_autocommit
            except Exception:
                discard = True
        if discard or self._pool is None:
            try:
                conn.close()
            except Exception:
                pass
        if self._pool is not None:
            self._pool.putconn(conn)  # a closed connection is discarded and replaced

    def _lose_locked(self, reason: str, cause: Optional[BaseException] = None) -> None:
        self._state.lose(reason, cause)
        self._stop_renewal_locked()
        self._checkin(discard=True)

    def _settle_locked(self) -> None:
        if self._state.holds == 0 and self._given is None and self._conn is not None:
            self._checkin(discard=True)

    # -- lock and unlock -----------------------------------------------------------------

    def acquire(self, blocking: bool = True, timeout: Optional[Seconds] = None) -> bool:
        """Take the lock.

        * ``blocking=True, timeout=None``: wait as long as it takes (the server's
          ``lock_timeout``, ``statement_timeout``, cancel and deadlock detection apply
          and raise); returns True.
        * ``blocking=True, timeout=seconds | timedelta``: wait at most that long; False
          when the time ran out (nothing is then held). 0 is a plain try.
        * ``blocking=False``: never wait; False when someone else holds it.
        """
        call = self._target.lock_call(blocking, timeout)
        with self._mutex:
            self._settle_locked()
            conn = self._checkout()
            began = _begins(conn)
            got = False
            try:
                (value,) = _fetch(conn, call.sql, call.params)
                got = acquired_from(call, value)
                token = value if call.returns_token else None
                if got and call.then_token is not None:
                    token, _ = _fetch(conn, call.then_token, call.params)
                if began:
                    conn.commit()
            except BaseException as exc:
                self._failed_locked(conn, began, exc, taken=got)
                raise
            if got:
                self._state.granted(token)
                self._start_renewal_locked()
            elif self._state.holds == 0:
                self._checkin(discard=False)
            return got

    def _failed_locked(self, conn: psycopg.Connection[Any], began: bool, exc: BaseException, taken: bool) -> None:
        st = self._state
        if conn.closed:
            # The connection is gone, and every lock of its session with it.
            self._lose_locked("the connection was lost", exc)
            return
        interrupted = not isinstance(exc, psycopg.Error)  # KeyboardInterrupt & co: state unknown
        if self._given is None and (interrupted or taken or st.holds == 0):
            if st.holds > 0:
                self._lose_locked("a failed or interrupted call closed the connection", exc)
            else:
                self._checkin(discard=True)
            return
        if began:
            _rollback_quietly(conn)
        if taken:
            try:
                _fetch(conn, self._target.unlock_sql(), self._target.params())
                if began:
                    conn.commit()
            except Exception:
                if began:
                    _rollback_quietly(conn)

    def release(self) -> bool:
        """Release one hold. True when the server released it. False when this object
        does not hold the lock, or has lost it (:attr:`lost` says why: the connection
        was lost, or it was unlocked behind the object's back). An owned connection goes
        back after the last release, or is closed if the release failed."""
        with self._mutex:
            st = self._state
            if st.holds == 0:
                self._settle_locked()
                return False
            conn = self._conn
            assert conn is not None
            if _peer_gone(conn):
                self._lose_locked("the connection was lost (the server ended the session)")
                return False
            began = _begins(conn)
            try:
                (value,) = _fetch(conn, self._target.unlock_sql(), self._target.params())
                if began:
                    conn.commit()
            except BaseException as exc:
                if conn.closed:
                    self._lose_locked("the connection was lost", exc)
                    return False
                if self._given is None:
                    # Closing the connection releases everything it held.
                    if st.holds > 1:
                        self._lose_locked("a failed release closed the connection", exc)
                    else:
                        st.holds = 0
                        st.token = None
                        self._stop_renewal_locked()
                        self._checkin(discard=True)
                elif began:
                    _rollback_quietly(conn)
                raise
            released = self._target.released(value)
            if not released:
                self._lose_locked("the server did not hold it: it was unlocked behind this object's back")
                return False
            st.released_one()
            renewer = None
            if st.holds == 0:
                renewer = self._stop_renewal_locked()
                self._checkin(discard=False)
        if renewer is not None and renewer is not threading.current_thread():
            renewer.join(timeout=5)
        return True

    def renew(self) -> bool:
        """Start the lease again at its length (``named_lock_renew``); False when the lock
        is not held or was lost. Only for leased locks; automatic unless
        ``auto_renew=False``."""
        if self._target.lease is None:
            raise NamedLockError("renew() is for leased locks (SessionLock(..., lease=seconds))")
        with self._mutex:
            return self._renew_locked()

    def _renew_locked(self) -> bool:
        st = self._state
        conn = self._conn
        if st.holds == 0 or conn is None:
            return False
        began = _begins(conn)
        try:
            (ok,) = _fetch(conn, self._target.renew_sql(), self._target.params())
            if began:
                conn.commit()
        except BaseException as exc:
            if conn.closed:
                self._lose_locked("the connection was lost; the lease could not be renewed", exc)
                return False
            if began:
                _rollback_quietly(conn)
            raise
        if not ok:
            self._lose_locked("the server holds no lease on it: it was released behind this object's back")
            return False
        st.renew_error = None
        return True

    # -- renewal thread --------------------------------------------------------------

    def _start_renewal_locked(self) -> None:
        interval = self._target.renew_interval
        if interval is None or not self._auto_renew or self._renewer is not None:
            return
        stop = threading.Event()
        thread = threading.Thread(
            target=self._renew_loop, args=(stop, interval), name=f"pg_named_locks lease {self.name!r}", daemon=True
        )
        self._stop, self._renewer = stop, thread
        thread.start()

    def _stop_renewal_locked(self) -> Optional[threading.Thread]:
        stop, thread = self._stop, self._renewer
        self._stop = self._renewer = None
        if stop is not None:
            stop.set()
        return thread

    def _renew_loop(self, stop: threading.Event, interval: float) -> None:
        while not stop.wait(interval):
            with self._mutex:
                if stop.is_set():
                    return
                try:
                    if not self._renew_locked():
                        return
                except Exception as exc:
                    # e.g. the caller's transaction on a given connection is aborted;
                    # try again at the next interval.
                    self._state.renew_error = exc

    # -- context manager -------------------------------------------------------------

    def __enter__(self) -> SessionLock:
        if not self.acquire(blocking=self._blocking, timeout=self._timeout):
            raise LockNotAcquired(self._target.name)
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if not self.release() and exc_type is None and self._state.lost is not None:
            raise self._state.lost

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._target.name!r} holds={self._state.holds}>"


class XactLock:
    """A transaction-level named lock: taken in the connection's current transaction and
    released by the server at COMMIT or ROLLBACK. No release method, on purpose: ending
    the transaction is the release.

    ``XactLock(conn, name, *, shared=False, fenced=True)``; ``name`` may be a sequence of
    names, locked all or nothing in the server's deadlock-free order (``xact_lock_many``;
    exclusive only) -- e.g. both accounts of a funds transfer. Works behind a
    transaction-mode pooler (PgBouncer), where session locks do not.

    On a connection in autocommit mode, open the transaction first
    (``with conn.transaction(): ...``): a transaction lock outside one would end with
    its own statement, so :meth:`acquire` refuses.
    """

    def __init__(self, conn: psycopg.Connection[Any], name: Names, *, shared: bool = False, fenced: bool = True):
        if not isinstance(conn, psycopg.Connection):
            raise TypeError(f"a transaction lock needs the psycopg Connection of the transaction, not {conn!r}")
        self._conn = conn
        self._target = Target(name, shared=shared, xact=True, fenced=fenced)
        self._token: Optional[int] = None

    @property
    def name(self) -> Names:
        return self._target.name  # type: ignore[return-value]

    @property
    def connection(self) -> psycopg.Connection[Any]:
        return self._conn

    @property
    def token(self) -> Optional[int]:
        """The fencing token of the last successful acquire (exclusive, one name, fenced),
        valid until that transaction ends; else None."""
        return self._token

    def acquire(self, blocking: bool = True, timeout: Optional[Seconds] = None) -> bool:
        """Take the lock in the current transaction; same arguments and results as
        :meth:`SessionLock.acquire`. False leaves nothing held; an error aborts the
        transaction, as any failed statement does."""
        call = self._target.lock_call(blocking, timeout)
        conn = self._conn
        if conn.autocommit and conn.info.transaction_status == _IDLE:
            raise NamedLockError("a transaction lock needs an open transaction: use `with conn.transaction():`")
        (value,) = _fetch(conn, call.sql, call.params)
        got = acquired_from(call, value)
        if got:
            self._token = value if call.returns_token else None
        return got


@contextmanager
def advisory_lock(
    bind: SyncBind,
    name: Names,
    blocking: bool = True,
    timeout: Optional[Seconds] = None,
    *,
    shared: bool = False,
    lease: Optional[Seconds] = None,
) -> Iterator[bool]:
    """``with advisory_lock(pool, "daily-report-job", blocking=False) as acquired: ...``

    Holds a :class:`SessionLock` for the body and yields whether it was acquired (the
    body runs either way: test the flag). The lock is released afterwards, also when the
    body raises. Raises :class:`LockLost` at the end of a body that completed while the
    lock was lost.
    """
    lock = SessionLock(bind, name, shared=shared, lease=lease, fenced=False)
    if not lock.acquire(blocking=blocking, timeout=timeout):
        yield False
        return
    try:
        yield True
    except BaseException:
        lock.release()
        raise
    if not lock.release() and lock.lost is not None:
        raise lock.lost


# -- asyncio -------------------------------------------------------------------------


async def _afetch(conn: psycopg.AsyncConnection[Any], template: str, params: Any) -> Tuple[Any, ...]:
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(_sql(template), params)
        row = await cur.fetchone()
    assert row is not None
    return row


async def _arollback_quietly(conn: psycopg.AsyncConnection[Any]) -> None:
    try:
        await conn.rollback()
    except Exception:
        pass


class AsyncSessionLock:
    """The asyncio twin of :class:`SessionLock`: the same arguments and behaviour, with
    ``await lock.acquire()``, ``await lock.release()``, ``await lock.renew()`` and
    ``async with``. ``bind`` is a ``psycopg_pool.AsyncConnectionPool``, a conninfo
    string or a ``psycopg.AsyncConnection``; a lease is renewed by an asyncio task.

    Cancelling a waiting acquire (``task.cancel()``, ``asyncio.wait_for``) closes an
    owned connection, so nothing is left behind; on a connection you passed in the
    outcome of the cancelled call is unknown -- bound waits with ``timeout=`` instead,
    which the server ends cleanly. The renewals of a leased lock run in the event loop:
    a loop blocked for longer than the lease loses the lock. On a connection you pass
    in, prefer autocommit for a leased lock (see :class:`SessionLock`).
    """

    def __init__(
        self,
        bind: AsyncBind,
        name: Names,
        *,
        shared: bool = False,
        blocking: bool = True,
        timeout: Optional[Seconds] = None,
        lease: Optional[Seconds] = None,
        auto_renew: bool = True,
        fenced: bool = True,
    ) -> None:
        _check_blocking(blocking, timeout)
        self._target = Target(name, shared=shared, xact=False, fenced=fenced, lease=lease)
        self._state = HoldState(self._target)
        self._blocking = blocking
        self._timeout = timeout
        self._auto_renew = auto_renew
        self._given: Optional[psycopg.AsyncConnection[Any]] = None
        self._pool: Optional[AsyncPool] = None
        self._conninfo: Optional[str] = None
        if isinstance(bind, psycopg.Connection):
            raise TypeError("a synchronous Connection needs SessionLock")
        if isinstance(bind, psycopg.AsyncConnection):
            self._given = bind
        elif isinstance(bind, str):
            self._conninfo = bind
        elif _pool_methods(bind):
            if not inspect.iscoroutinefunction(bind.getconn):
                raise TypeError("a synchronous pool needs SessionLock")
            self._pool = bind
        else:
            raise TypeError(
                f"expected a psycopg AsyncConnection, an async pool or a conninfo string, got {type(bind).__name__}"
            )
        self._conn: Optional[psycopg.AsyncConnection[Any]] = self._given
        self._pool_autocommit = False
        self._mutex_: Optional[asyncio.Lock] = None  # made in the running loop
        self._renewer: Optional[asyncio.Task[None]] = None

    def _mutex(self) -> asyncio.Lock:
        if self._mutex_ is None:
            self._mutex_ = asyncio.Lock()
        return self._mutex_

    @property
    def name(self) -> Names:
        return self._target.name  # type: ignore[return-value]

    @property
    def connection(self) -> Optional[psycopg.AsyncConnection[Any]]:
        """The connection the lock lives on (None while a pooled lock is not held)."""
        return self._conn

    @property
    def is_acquired(self) -> bool:
        """Whether this object holds the lock; False once its connection is found lost
        (a closed socket is noticed here, without a query)."""
        st = self._state
        if st.holds == 0:
            return False
        busy = self._mutex_ is not None and self._mutex_.locked()
        if not busy and self._conn is not None and _peer_gone_async(self._conn):
            # The connection itself is handed back by the next release() or acquire().
            st.lose("the connection was lost (the server ended the session)")
            self._stop_renewal()
        return st.holds > 0

    @property
    def token(self) -> Optional[int]:
        """The fencing token of the current hold (see :attr:`SessionLock.token`)."""
        return self._state.token if self._state.holds > 0 else None

    @property
    def lost(self) -> Optional[LockLost]:
        """Why the lock was lost without a release, else None."""
        return self._state.lost

    async def _checkout(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None:
            if self._pool is not None:
                conn = await self._pool.getconn()
                # autocommit while the lock has it (see SessionLock._checkout)
                self._pool_autocommit = conn.autocommit
                try:
                    await conn.set_autocommit(True)
                except BaseException:
                    await self._pool.putconn(conn)
                    raise
                self._conn = conn
            else:
                assert self._conninfo is not None
                self._conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        return self._conn

    async def _checkin(self, discard: bool) -> None:
        if self._given is not None:
            return
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if not discard and self._pool is not None and not conn.closed:
            try:
                await conn.set_autocommit(self._pool_autocommit)
            except Exception:
                discard = True
        if discard or self._pool is None:
            try:
                await conn.close()
            except Exception:
                pass
        if self._pool is not None:
            await self._pool.putconn(conn)

    async def _lose(self, reason: str, cause: Optional[BaseException] = None) -> None:
        self._state.lose(reason, cause)
        self._stop_renewal()
        await self._checkin(discard=True)

    async def _settle(self) -> None:
        if self._state.holds == 0 and self._given is None and self._conn is not None:
            await self._checkin(discard=True)

    async def acquire(self, blocking: bool = True, timeout: Optional[Seconds] = None) -> bool:
        """Take the lock; see :meth:`SessionLock.acquire`."""
        call = self._target.lock_call(blocking, timeout)
        async with self._mutex():
            await self._settle()
            conn = await self._checkout()
            began = _begins(conn)
            got = False
            try:
                (value,) = await _afetch(conn, call.sql, call.params)
                got = acquired_from(call, value)
                token = value if call.returns_token else None
                if got and call.then_token is not None:
                    token, _ = await _afetch(conn, call.then_token, call.params)
                if began:
                    await conn.commit()
            except BaseException as exc:
                await self._failed(conn, began, exc, taken=got)
                raise
            if got:
                self._state.granted(token)
                self._start_renewal()
            elif self._state.holds == 0:
                await self._checkin(discard=False)
            return got

    async def _failed(self, conn: psycopg.AsyncConnection[Any], began: bool, exc: BaseException, taken: bool) -> None:
        st = self._state
        if conn.closed:
            await self._lose("the connection was lost", exc)
            return
        interrupted = not isinstance(exc, psycopg.Error)  # CancelledError & co: state unknown
        if self._given is None and (interrupted or taken or st.holds == 0):
            if st.holds > 0:
                await self._lose("a failed or interrupted call closed the connection", exc)
            else:
                await self._checkin(discard=True)
            return
        if began:
            await _arollback_quietly(conn)
        if taken:
            try:
                await _afetch(conn, self._target.unlock_sql(), self._target.params())
                if began:
                    await conn.commit()
            except Exception:
                if began:
                    await _arollback_quietly(conn)

    async def release(self) -> bool:
        """Release one hold; see :meth:`SessionLock.release`."""
        async with self._mutex():
            st = self._state
            if st.holds == 0:
                await self._settle()
                return False
            conn = self._conn
            assert conn is not None
            if _peer_gone_async(conn):
                await self._lose("the connection was lost (the server ended the session)")
                return False
            began = _begins(conn)
            try:
                (value,) = await _afetch(conn, self._target.unlock_sql(), self._target.params())
                if began:
                    await conn.commit()
            except BaseException as exc:
                if conn.closed:
                    await self._lose("the connection was lost", exc)
                    return False
                if self._given is None:
                    if st.holds > 1:
                        await self._lose("a failed release closed the connection", exc)
                    else:
                        st.holds = 0
                        st.token = None
                        self._stop_renewal()
                        await self._checkin(discard=True)
                elif began:
                    await _arollback_quietly(conn)
                raise
            if not self._target.released(value):
                await self._lose("the server did not hold it: it was unlocked behind this object's back")
                return False
            st.released_one()
            if st.holds == 0:
                self._stop_renewal()
                await self._checkin(discard=False)
            return True

    async def renew(self) -> bool:
        """Start the lease again at its length; see :meth:`SessionLock.renew`."""
        if self._target.lease is None:
            raise NamedLockError("renew() is for leased locks (AsyncSessionLock(..., lease=seconds))")
        async with self._mutex():
            return await self._renew_locked()

    async def _renew_locked(self) -> bool:
        st = self._state
        conn = self._conn
        if st.holds == 0 or conn is None:
            return False
        began = _begins(conn)
        try:
            (ok,) = await _afetch(conn, self._target.renew_sql(), self._target.params())
            if began:
                await conn.commit()
        except BaseException as exc:
            if conn.closed:
                await self._lose("the connection was lost; the lease could not be renewed", exc)
                return False
            if began:
                await _arollback_quietly(conn)
            raise
        if not ok:
            await self._lose("the server holds no lease on it: it was released behind this object's back")
            return False
        st.renew_error = None
        return True

    def _start_renewal(self) -> None:
        interval = self._target.renew_interval
        if interval is None or not self._auto_renew or self._renewer is not None:
            return
        self._renewer = asyncio.get_running_loop().create_task(
            self._renew_loop(interval), name=f"pg_named_locks lease {self.name!r}"
        )

    def _stop_renewal(self) -> None:
        # Called with the mutex held, or from a synchronous property: the renewal task is
        # then asleep or waiting for the mutex, never inside a query, so cancelling it
        # cannot interrupt a statement.
        task, self._renewer = self._renewer, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _renew_loop(self, interval: float) -> None:
        me = asyncio.current_task()
        while True:
            await asyncio.sleep(interval)
            async with self._mutex():
                if self._renewer is not me:
                    return
                try:
                    if not await self._renew_locked():
                        return
                except Exception as exc:
                    self._state.renew_error = exc

    async def __aenter__(self) -> AsyncSessionLock:
        if not await self.acquire(blocking=self._blocking, timeout=self._timeout):
            raise LockNotAcquired(self._target.name)
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if not await self.release() and exc_type is None and self._state.lost is not None:
            raise self._state.lost

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._target.name!r} holds={self._state.holds}>"


class AsyncXactLock:
    """The asyncio twin of :class:`XactLock`, on a ``psycopg.AsyncConnection``."""

    def __init__(
        self, conn: psycopg.AsyncConnection[Any], name: Names, *, shared: bool = False, fenced: bool = True
    ) -> None:
        if not isinstance(conn, psycopg.AsyncConnection):
            raise TypeError(f"a transaction lock needs the psycopg AsyncConnection of the transaction, not {conn!r}")
        self._conn = conn
        self._target = Target(name, shared=shared, xact=True, fenced=fenced)
        self._token: Optional[int] = None

    @property
    def name(self) -> Names:
        return self._target.name  # type: ignore[return-value]

    @property
    def connection(self) -> psycopg.AsyncConnection[Any]:
        return self._conn

    @property
    def token(self) -> Optional[int]:
        """See :attr:`XactLock.token`."""
        return self._token

    async def acquire(self, blocking: bool = True, timeout: Optional[Seconds] = None) -> bool:
        """See :meth:`XactLock.acquire`."""
        call = self._target.lock_call(blocking, timeout)
        conn = self._conn
        if conn.autocommit and conn.info.transaction_status == _IDLE:
            raise NamedLockError("a transaction lock needs an open transaction: use `async with conn.transaction():`")
        (value,) = await _afetch(conn, call.sql, call.params)
        got = acquired_from(call, value)
        if got:
            self._token = value if call.returns_token else None
        return got


@asynccontextmanager
async def async_advisory_lock(
    bind: AsyncBind,
    name: Names,
    blocking: bool = True,
    timeout: Optional[Seconds] = None,
    *,
    shared: bool = False,
    lease: Optional[Seconds] = None,
) -> AsyncIterator[bool]:
    """``async with async_advisory_lock(pool, "job", blocking=False) as acquired: ...``;
    the asyncio twin of :func:`advisory_lock`."""
    lock = AsyncSessionLock(bind, name, shared=shared, lease=lease, fenced=False)
    if not await lock.acquire(blocking=blocking, timeout=timeout):
        yield False
        return
    try:
        yield True
    except BaseException:
        await lock.release()
        raise
    if not await lock.release() and lock.lost is not None:
        raise lock.lost
