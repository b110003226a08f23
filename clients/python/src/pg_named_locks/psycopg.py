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

import inspect
import select
import threading
from contextlib import asynccontextmanager, contextmanager
from types import TracebackType
from typing import Any, AsyncIterator, Dict, Iterator, Optional, Protocol, Type, TypeVar, Union

import psycopg
from psycopg import pq
from psycopg.rows import tuple_row

from ._core import (
    LockLost,
    LockNotAcquired,
    NamedLockError,
    Names,
    Seconds,
    lock_key,
    lock_key32,
    render,
    sqlstate,
)
from ._session import AsyncSessionSteps, SessionSteps, Steps, XactSteps, held, run_async, run_sync

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
#: The connection of a class: its synchronous and asyncio twins share their code.
Conn = TypeVar("Conn", psycopg.Connection[Any], psycopg.AsyncConnection[Any])

_IDLE = pq.TransactionStatus.IDLE


def _placeholder(param: str) -> str:
    return f"%({param})s"


def _sql(template: str) -> str:
    return render(template, _placeholder)


def _fetch_value(conn: AnyConnection, template: str, params: Dict[str, Any]) -> Steps[Any]:
    """Step: the first column of the one row of a SQL template, on either connection."""
    cur = conn.cursor(row_factory=tuple_row)
    try:
        yield cur.execute(_sql(template), params)
        row = yield cur.fetchone()
    finally:
        yield cur.close()
    assert row is not None
    return row[0]


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


def _pool_methods(bind: Any) -> bool:
    return callable(getattr(bind, "getconn", None)) and callable(getattr(bind, "putconn", None))


class _Session(SessionSteps[Conn]):
    """The psycopg part of :class:`SessionLock` and :class:`AsyncSessionLock`: where the
    connection comes from and where it goes. Each twin names its connection class and
    says how it sets autocommit."""

    _GONE = "the connection was lost (the server ended the session)"
    _ASYNC: bool
    _connection_class: Any
    _other_class: Any
    # the TypeErrors of a wrong bind
    _WRONG_CONNECTION: str
    _WRONG_POOL: str
    _EXPECTED: str

    def __init__(self, bind: Any, name: Names, **options: Any) -> None:
        # options: the keyword arguments of SessionLock, AsyncSessionLock and SessionSteps
        super().__init__(name, **options)
        self._given: Optional[Conn] = None
        self._pool: Any = None
        self._conninfo: Optional[str] = None
        if isinstance(bind, self._other_class):
            raise TypeError(self._WRONG_CONNECTION)
        if isinstance(bind, self._connection_class):
            self._given = bind
        elif isinstance(bind, str):
            self._conninfo = bind
        elif _pool_methods(bind):
            if inspect.iscoroutinefunction(bind.getconn) != self._ASYNC:
                raise TypeError(self._WRONG_POOL)
            self._pool = bind
        else:
            raise TypeError(f"{self._EXPECTED}, got {type(bind).__name__}")
        self._conn = self._given
        self._pool_autocommit = False

    def _set_autocommit(self, conn: Conn, value: bool) -> Any:
        raise NotImplementedError

    def _owns(self) -> bool:
        return self._given is None

    def _checkout(self) -> Steps[Conn]:
        if self._conn is None:
            if self._pool is not None:
                conn = yield self._pool.getconn()
                # Autocommit while the lock has it: each lock call and renewal is one
                # statement, never a moment "idle in transaction"; restored at checkin.
                self._pool_autocommit = conn.autocommit
                try:
                    yield self._set_autocommit(conn, True)
                except BaseException:
                    yield self._pool.putconn(conn)
                    raise
                self._conn = conn
            else:
                assert self._conninfo is not None
                self._conn = yield self._connection_class.connect(self._conninfo, autocommit=True)
        return self._conn

    def _checkin(self, discard: bool) -> Steps[None]:
        """Give an owned connection back (to its pool, or close it); ``discard`` closes it
        first, which ends its server session and so every lock it held."""
        if self._given is not None:
            return
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if not discard and self._pool is not None and not conn.closed:
            try:
                yield self._set_autocommit(conn, self._pool_autocommit)
            except Exception:
                discard = True
        if discard or self._pool is None:
            try:
                yield conn.close()  # type: ignore[func-returns-value]  # (None in the synchronous twin)
            except Exception:
                pass
        if self._pool is not None:
            yield self._pool.putconn(conn)  # a closed connection is discarded and replaced

    def _discard(self) -> Steps[None]:
        return self._checkin(discard=True)

    def _give_back(self) -> Steps[None]:
        return self._checkin(discard=False)

    def _value(self, conn: Conn, template: str, params: Dict[str, Any]) -> Steps[Any]:
        return _fetch_value(conn, template, params)

    def _begins(self, conn: Conn) -> bool:
        return _begins(conn)

    def _broken(self, conn: Conn) -> bool:
        return conn.closed

    def _dropped(self, conn: Conn) -> bool:
        return conn.closed

    def _interrupted(self, exc: BaseException) -> bool:
        return not isinstance(exc, psycopg.Error)  # KeyboardInterrupt, CancelledError & co


class _Xact(XactSteps[Conn]):
    """The psycopg part of :class:`XactLock` and :class:`AsyncXactLock`."""

    _NO_TRANSACTION: str

    def _value(self, bind: Conn, template: str, params: Dict[str, Any]) -> Steps[Any]:
        return _fetch_value(bind, template, params)

    def _check_transaction(self) -> None:
        conn = self._bind
        if conn.autocommit and conn.info.transaction_status == _IDLE:
            raise NamedLockError(self._NO_TRANSACTION)


# -- synchronous ---------------------------------------------------------------------


class SessionLock(_Session[psycopg.Connection[Any]]):
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

    _ASYNC = False
    _connection_class = psycopg.Connection
    _other_class = psycopg.AsyncConnection
    _WRONG_CONNECTION = "an AsyncConnection needs AsyncSessionLock"
    _WRONG_POOL = "an async pool needs AsyncSessionLock"
    _EXPECTED = "expected a psycopg Connection, a connection pool or a conninfo string"

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
        super().__init__(
            bind,
            name,
            shared=shared,
            blocking=blocking,
            timeout=timeout,
            lease=lease,
            auto_renew=auto_renew,
            fenced=fenced,
        )
        self._mutex = threading.RLock()
        self._stop: Optional[threading.Event] = None
        self._renewer: Optional[threading.Thread] = None
        self._stopped: Optional[threading.Thread] = None  # by the last release, to join

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
                if st.holds > 0 and conn is not None and self._gone(conn):
                    run_sync(self._lose(self._GONE))
            finally:
                self._mutex.release()
        return st.holds > 0

    @property
    def token(self) -> Optional[int]:
        """The fencing token of the current hold; None when not held, shared, many names
        or ``fenced=False``."""
        return self._state.current_token

    @property
    def lost(self) -> Optional[LockLost]:
        """Why the lock was lost without a release (a :class:`LockLost`), else None.
        Cleared by the next successful acquire."""
        return self._state.lost

    # -- the synchronous I/O ---------------------------------------------------------

    def _set_autocommit(self, conn: psycopg.Connection[Any], value: bool) -> None:
        conn.autocommit = value

    def _gone(self, conn: psycopg.Connection[Any]) -> bool:
        return _peer_gone(conn)

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
            return run_sync(self._acquire_steps(call))

    def release(self) -> bool:
        """Release one hold. True when the server released it. False when this object
        does not hold the lock, or has lost it (:attr:`lost` says why: the connection
        was lost, or it was unlocked behind the object's back). An owned connection goes
        back after the last release, or is closed if the release failed."""
        with self._mutex:
            self._stopped = None
            released = run_sync(self._release_steps())
            renewer, self._stopped = self._stopped, None
        if renewer is not None and renewer is not threading.current_thread():
            renewer.join(timeout=5)
        return released

    def renew(self) -> bool:
        """Start the lease again at its length (``named_lock_renew``); False when the lock
        is not held or was lost. Only for leased locks; automatic unless
        ``auto_renew=False``."""
        self._check_leased()
        with self._mutex:
            return run_sync(self._renew_steps())

    # -- renewal thread --------------------------------------------------------------

    def _start_renewal(self) -> None:
        interval = self._target.renew_interval
        if interval is None or not self._auto_renew or self._renewer is not None:
            return
        stop = threading.Event()
        thread = threading.Thread(
            target=self._renew_loop, args=(stop, interval), name=f"pg_named_locks lease {self.name!r}", daemon=True
        )
        self._stop, self._renewer = stop, thread
        thread.start()

    def _stop_renewal(self) -> None:
        stop = self._stop
        self._stop = self._renewer = None
        if stop is not None:
            stop.set()

    def _renewal_done(self) -> None:
        # release() waits for the thread, once it has let go of the mutex
        self._stopped = self._renewer
        self._stop_renewal()

    def _renew_loop(self, stop: threading.Event, interval: float) -> None:
        while not stop.wait(interval):
            with self._mutex:
                if stop.is_set() or not run_sync(self._renewal()):
                    return

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


class XactLock(_Xact[psycopg.Connection[Any]]):
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

    _NO_TRANSACTION = "a transaction lock needs an open transaction: use `with conn.transaction():`"

    def __init__(self, conn: psycopg.Connection[Any], name: Names, *, shared: bool = False, fenced: bool = True):
        if not isinstance(conn, psycopg.Connection):
            raise TypeError(f"a transaction lock needs the psycopg Connection of the transaction, not {conn!r}")
        super().__init__(conn, name, shared=shared, fenced=fenced)

    @property
    def connection(self) -> psycopg.Connection[Any]:
        return self._bind

    @property
    def token(self) -> Optional[int]:
        """The fencing token of the last successful acquire (exclusive, one name, fenced),
        valid until that transaction ends; else None."""
        return self._token

    def acquire(self, blocking: bool = True, timeout: Optional[Seconds] = None) -> bool:
        """Take the lock in the current transaction; same arguments and results as
        :meth:`SessionLock.acquire`. False leaves nothing held; an error aborts the
        transaction, as any failed statement does."""
        return run_sync(self._acquire_steps(self._target.lock_call(blocking, timeout)))


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


class AsyncSessionLock(
    _Session[psycopg.AsyncConnection[Any]],
    AsyncSessionSteps[psycopg.AsyncConnection[Any]],
):
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

    _ASYNC = True
    _connection_class = psycopg.AsyncConnection
    _other_class = psycopg.Connection
    _WRONG_CONNECTION = "a synchronous Connection needs SessionLock"
    _WRONG_POOL = "a synchronous pool needs SessionLock"
    _EXPECTED = "expected a psycopg AsyncConnection, an async pool or a conninfo string"

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
        super().__init__(
            bind,
            name,
            shared=shared,
            blocking=blocking,
            timeout=timeout,
            lease=lease,
            auto_renew=auto_renew,
            fenced=fenced,
        )

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
        if not self._busy() and self._conn is not None and self._gone(self._conn):
            # The connection itself is handed back by the next release() or acquire().
            st.lose(self._GONE)
            self._stop_renewal()
        return st.holds > 0

    @property
    def token(self) -> Optional[int]:
        """The fencing token of the current hold (see :attr:`SessionLock.token`)."""
        return self._state.current_token

    @property
    def lost(self) -> Optional[LockLost]:
        """Why the lock was lost without a release, else None."""
        return self._state.lost

    # -- the asyncio I/O -------------------------------------------------------------

    def _set_autocommit(self, conn: psycopg.AsyncConnection[Any], value: bool) -> Any:
        return conn.set_autocommit(value)

    def _gone(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        return _peer_gone_async(conn)

    # -- lock and unlock -----------------------------------------------------------------

    async def acquire(self, blocking: bool = True, timeout: Optional[Seconds] = None) -> bool:
        """Take the lock; see :meth:`SessionLock.acquire`."""
        return await super().acquire(blocking, timeout)

    async def release(self) -> bool:
        """Release one hold; see :meth:`SessionLock.release`."""
        return await super().release()

    async def renew(self) -> bool:
        """Start the lease again at its length; see :meth:`SessionLock.renew`."""
        return await super().renew()


class AsyncXactLock(_Xact[psycopg.AsyncConnection[Any]]):
    """The asyncio twin of :class:`XactLock`, on a ``psycopg.AsyncConnection``."""

    _NO_TRANSACTION = "a transaction lock needs an open transaction: use `async with conn.transaction():`"

    def __init__(
        self, conn: psycopg.AsyncConnection[Any], name: Names, *, shared: bool = False, fenced: bool = True
    ) -> None:
        if not isinstance(conn, psycopg.AsyncConnection):
            raise TypeError(f"a transaction lock needs the psycopg AsyncConnection of the transaction, not {conn!r}")
        super().__init__(conn, name, shared=shared, fenced=fenced)

    @property
    def connection(self) -> psycopg.AsyncConnection[Any]:
        return self._bind

    @property
    def token(self) -> Optional[int]:
        """See :attr:`XactLock.token`."""
        return self._token

    async def acquire(self, blocking: bool = True, timeout: Optional[Seconds] = None) -> bool:
        """See :meth:`XactLock.acquire`."""
        return await run_async(self._acquire_steps(self._target.lock_call(blocking, timeout)))


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
    async with held(lock, blocking, timeout) as acquired:
        yield acquired
