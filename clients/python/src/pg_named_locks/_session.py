"""What every driver's lock classes share: the protocol of a session lock -- acquire,
release, renew, and what happens when one of them fails -- and of a transaction lock,
written once as *steps* that psycopg (synchronous and asyncio) and SQLAlchemy run.

The three drivers run the same statements in the same order, and hand back, close or
give up their connection at the same points. Only the I/O differs: ``conn.commit()``
returns None in one and an awaitable in the others. So a step is a generator that
``yield``\\ s each driver call it makes:

* ``x = yield conn.commit()`` -- in an asyncio class the call returned an awaitable;
  :func:`run_async` awaits it and sends its result back into the step, or raises its
  exception at the ``yield`` (a cancel too), where the step's ``try`` handles it. In the
  synchronous class the call has already run (or raised) when it is yielded, and
  :func:`run_sync` just sends its result back. ``yield`` reads as ``await`` in the one
  and as nothing in the other.
* ``x = yield from self._checkout()`` -- a step running another step.

A driver's class supplies the I/O hooks (``_checkout``, ``_value``, ``_discard`` ... of
:class:`SessionSteps`, themselves steps or predicates) and runs the steps under its
mutex: a ``threading.RLock`` (:class:`pg_named_locks.psycopg.SessionLock`) or an
``asyncio.Lock`` (:class:`AsyncSessionSteps`).
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, AsyncIterator, Callable, Dict, Generator, Generic, Optional, Protocol, Type, TypeVar

from ._core import (
    HoldState,
    LockCall,
    LockNotAcquired,
    NamedLockError,
    Names,
    Seconds,
    Target,
    acquired_from,
    check_blocking,
)

T = TypeVar("T")
#: A step returning T: a generator yielding driver calls (see the module documentation).
Steps = Generator[Any, Any, T]


def run_sync(steps: Steps[T]) -> T:
    """Run steps whose driver calls are synchronous: what a step yields is already the
    result of its call."""
    value: Any = None
    try:
        while True:
            value = steps.send(value)
    except StopIteration as done:
        result: T = done.value
        return result


async def run_async(steps: Steps[T]) -> T:
    """Run steps whose driver calls return awaitables: await each one, then send its
    result into the step, or throw its exception (``CancelledError`` included) there."""
    resume: Callable[[Any], Any] = steps.send
    value: Any = None
    while True:
        try:
            awaitable = resume(value)
        except StopIteration as done:
            result: T = done.value
            return result
        try:
            value, resume = await awaitable, steps.send
        except BaseException as exc:
            value, resume = exc, steps.throw


class Connection(Protocol):
    """What the steps call on a connection themselves (each driver's connection has it)."""

    def commit(self) -> Any: ...

    def rollback(self) -> Any: ...


C = TypeVar("C", bound=Connection)


class SessionSteps(Generic[C]):
    """A session lock's state and steps. A driver class adds the I/O hooks below and
    runs the steps under its mutex."""

    #: The :class:`LockLost` reason when :meth:`_gone` finds the connection lost.
    _GONE = "the connection was lost"
    #: The reason when a failed acquire left the connection given up (:meth:`_dropped`).
    _DROPPED = "the connection was lost"

    _conn: Optional[C]

    def __init__(
        self,
        name: Names,
        *,
        shared: bool,
        blocking: bool,
        timeout: Optional[Seconds],
        lease: Optional[Seconds],
        auto_renew: bool,
        fenced: bool,
    ) -> None:
        check_blocking(blocking, timeout)
        self._target = Target(name, shared=shared, xact=False, fenced=fenced, lease=lease)
        self._state = HoldState(self._target)
        self._blocking = blocking
        self._timeout = timeout
        self._auto_renew = auto_renew

    # -- the driver's part ---------------------------------------------------------------

    def _owns(self) -> bool:
        """Whether the connection is the lock's own (from a pool, an engine or a conninfo
        string), not one the caller passed in and keeps."""
        raise NotImplementedError

    def _checkout(self) -> Steps[C]:
        """Step: the connection to lock on; an owned one is checked out or opened first
        if the lock has none."""
        raise NotImplementedError

    def _discard(self) -> Steps[None]:
        """Step: close an owned connection, which ends its server session and every lock
        of it; nothing for a connection the caller passed in."""
        raise NotImplementedError

    def _give_back(self) -> Steps[None]:
        """Step: hand an owned connection back after the last release, unlocked (to its
        pool, or close it); nothing for a connection the caller passed in."""
        raise NotImplementedError

    def _value(self, conn: C, template: str, params: Dict[str, Any]) -> Steps[Any]:
        """Step: run a SQL template of :mod:`pg_named_locks._core`; the first column of
        its one row."""
        raise NotImplementedError

    def _begins(self, conn: C) -> bool:
        """Whether a statement would open a transaction that the lock must end itself."""
        raise NotImplementedError

    def _gone(self, conn: C) -> bool:
        """Whether the connection is known to be lost, found without a statement."""
        raise NotImplementedError

    def _broken(self, conn: C) -> bool:
        """After a release or renewal raised: whether the connection is lost (and every
        lock of its session with it)."""
        raise NotImplementedError

    def _dropped(self, conn: C) -> bool:
        """After an acquire raised: whether the driver gave the connection up (closed or
        invalidated it), so that its session and every lock of it are gone."""
        raise NotImplementedError

    def _interrupted(self, exc: BaseException) -> bool:
        """Whether ``exc`` interrupted a call on a connection the driver kept (a cancel,
        ``KeyboardInterrupt``): the outcome on the server is unknown."""
        return False

    def _lost_before_renewal(self, conn: C) -> bool:
        """Whether a renewal first checks the connection with :meth:`_gone`."""
        return False

    def _start_renewal(self) -> None:
        """Start renewing the lease, if leased, renewed automatically and not yet renewing."""
        raise NotImplementedError

    def _stop_renewal(self) -> None:
        raise NotImplementedError

    def _renewal_done(self) -> None:
        """The last release ends the renewals."""
        self._stop_renewal()

    # -- the steps -----------------------------------------------------------------------

    def _rollback_quietly(self, conn: C) -> Steps[None]:
        # Best effort after an error: the original exception is the one worth raising.
        try:
            yield conn.rollback()
        except Exception:
            pass

    def _own_statement(self, conn: C, began: bool, template: str) -> Steps[Any]:
        """Step: one statement on the lock's name(s) (unlock, renew), committed at once
        if it began a transaction."""
        value = yield from self._value(conn, template, self._target.params())
        if began:
            yield conn.commit()
        return value

    def _lose(self, reason: str, cause: Optional[BaseException] = None) -> Steps[None]:
        """The lock is gone (connection lost, lease expired, unlocked behind our back)."""
        self._state.lose(reason, cause)
        self._stop_renewal()
        yield from self._discard()

    def _settle(self) -> Steps[None]:
        # An owned connection still there while nothing is held (its lock was found lost
        # where no I/O could be done): it goes, not back to its pool.
        if self._state.holds == 0 and self._owns() and self._conn is not None:
            yield from self._discard()

    def _acquire_steps(self, call: LockCall) -> Steps[bool]:
        yield from self._settle()
        conn = yield from self._checkout()
        began = self._begins(conn)
        got = False
        try:
            value = yield from self._value(conn, call.sql, call.params)
            got = acquired_from(call, value)
            token = value if call.returns_token else None
            if got and call.then_token is not None:
                token = yield from self._value(conn, call.then_token, call.params)
            if began:
                yield conn.commit()
        except BaseException as exc:
            yield from self._failed(conn, began, exc, taken=got)
            raise
        if got:
            self._state.granted(token)
            self._start_renewal()
        elif self._state.holds == 0:
            yield from self._give_back()
        return got

    def _failed(self, conn: C, began: bool, exc: BaseException, taken: bool) -> Steps[None]:
        """After an acquire raised ``exc`` (``taken``: its lock statement had succeeded):
        leave no lock behind that this object does not count."""
        st = self._state
        if self._dropped(conn):
            # The connection is gone, and every lock of its session with it.
            yield from self._lose(self._DROPPED, exc)
            if began and not self._owns():
                # clears an invalidated connection's pending transaction
                yield from self._rollback_quietly(conn)
            return
        if self._owns() and (self._interrupted(exc) or taken or st.holds == 0):
            # Closing an owned connection releases everything it held.
            if st.holds > 0:
                yield from self._lose("a failed or interrupted call closed the connection", exc)
            else:
                yield from self._discard()
            return
        if began:
            yield from self._rollback_quietly(conn)
        if taken:
            try:
                yield from self._own_statement(conn, began, self._target.unlock_sql())
            except Exception:
                if began:
                    yield from self._rollback_quietly(conn)

    def _release_steps(self) -> Steps[bool]:
        st = self._state
        if st.holds == 0:
            yield from self._settle()
            return False
        conn = self._conn
        assert conn is not None
        if self._gone(conn):
            yield from self._lose(self._GONE)
            return False
        began = self._begins(conn)
        try:
            value = yield from self._own_statement(conn, began, self._target.unlock_sql())
        except BaseException as exc:
            if self._broken(conn):
                yield from self._lose("the connection was lost", exc)
                if began and not self._owns():
                    yield from self._rollback_quietly(conn)
                return False
            if self._owns():
                # Closing the connection releases everything it held.
                if st.holds > 1:
                    yield from self._lose("a failed release closed the connection", exc)
                else:
                    st.forget()
                    self._stop_renewal()
                    yield from self._discard()
            elif began:
                yield from self._rollback_quietly(conn)
            raise
        if not self._target.released(value):
            # The server's locks no longer match what this object took, so the
            # connection was used behind its back: do not hand it to the next user.
            yield from self._lose("the server did not hold it: it was unlocked behind this object's back")
            return False
        st.released_one()
        if st.holds == 0:
            self._renewal_done()
            yield from self._give_back()
        return True

    def _renew_steps(self) -> Steps[bool]:
        st = self._state
        conn = self._conn
        if st.holds == 0 or conn is None:
            return False
        if self._lost_before_renewal(conn) and self._gone(conn):
            yield from self._lose("the connection was lost; the lease could not be renewed")
            return False
        began = self._begins(conn)
        try:
            ok = yield from self._own_statement(conn, began, self._target.renew_sql())
        except BaseException as exc:
            if self._broken(conn):
                yield from self._lose("the connection was lost; the lease could not be renewed", exc)
                return False
            if began:
                yield from self._rollback_quietly(conn)
            raise
        if not ok:
            yield from self._lose("the server holds no lease on it: it was released behind this object's back")
            return False
        st.renew_error = None
        return True

    def _renewal(self) -> Steps[bool]:
        """One automatic renewal; False ends them (the lock is gone)."""
        try:
            return (yield from self._renew_steps())
        except Exception as exc:
            # e.g. the caller's transaction on a given connection is aborted; try again
            # at the next interval.
            self._state.renew_error = exc
            return True

    def _check_leased(self) -> None:
        if self._target.lease is None:
            raise NamedLockError(f"renew() is for leased locks ({type(self).__name__}(..., lease=seconds))")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._target.name!r} holds={self._state.holds}>"


L = TypeVar("L", bound="AsyncSessionSteps[Any]")


class AsyncSessionSteps(SessionSteps[C]):
    """The asyncio half of a session lock, the same for every asyncio driver: the steps
    run under an ``asyncio.Lock`` (made in the running loop), a lease is renewed by a task.
    The driver classes restate ``acquire``, ``release`` and ``renew`` for their docstrings."""

    _mutex_: Optional[asyncio.Lock] = None
    _renewer: Optional[asyncio.Task[None]] = None

    def _mutex(self) -> asyncio.Lock:
        if self._mutex_ is None:
            self._mutex_ = asyncio.Lock()
        return self._mutex_

    def _busy(self) -> bool:
        """Whether a call of this lock is in progress."""
        return self._mutex_ is not None and self._mutex_.locked()

    async def acquire(self, blocking: bool = True, timeout: Optional[Seconds] = None) -> bool:
        call = self._target.lock_call(blocking, timeout)
        async with self._mutex():
            return await run_async(self._acquire_steps(call))

    async def release(self) -> bool:
        async with self._mutex():
            return await run_async(self._release_steps())

    async def renew(self) -> bool:
        self._check_leased()
        async with self._mutex():
            return await run_async(self._renew_steps())

    def _start_renewal(self) -> None:
        interval = self._target.renew_interval
        if interval is None or not self._auto_renew or self._renewer is not None:
            return
        self._renewer = asyncio.get_running_loop().create_task(
            self._renew_loop(interval), name=f"pg_named_locks lease {self._target.name!r}"
        )

    def _stop_renewal(self) -> None:
        # Called with the mutex held, from a synchronous property, or from the renewal
        # task itself: the task is then asleep or waiting for the mutex, never inside a
        # statement, so cancelling it cannot interrupt one (SQLAlchemy would invalidate
        # the connection, and the lock would go with it).
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
                if not await run_async(self._renewal()):
                    return

    async def __aenter__(self: L) -> L:
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


@asynccontextmanager
async def held(lock: AsyncSessionSteps[Any], blocking: bool, timeout: Optional[Seconds]) -> AsyncIterator[bool]:
    """The asyncio ``advisory_lock`` functions: ``lock`` acquired for the body, which
    runs either way and gets whether it was; released afterwards, also when the body
    raises. Raises ``LockLost`` at the end of a body that completed while it was lost."""
    if not await lock.acquire(blocking=blocking, timeout=timeout):
        yield False
        return
    try:
        yield True
    except BaseException:
        await lock.release()
        raise
    if not await lock.release() and lock._state.lost is not None:
        raise lock._state.lost


B = TypeVar("B")


class XactSteps(Generic[B]):
    """A transaction lock on ``B`` (a connection or session): its state and its one step."""

    def __init__(self, bind: B, name: Names, *, shared: bool, fenced: bool) -> None:
        self._bind = bind
        self._target = Target(name, shared=shared, xact=True, fenced=fenced)
        self._token: Optional[int] = None

    @property
    def name(self) -> Names:
        return self._target.name  # type: ignore[return-value]

    def _value(self, bind: B, template: str, params: Dict[str, Any]) -> Steps[Any]:
        """Step: as :meth:`SessionSteps._value`."""
        raise NotImplementedError

    def _check_transaction(self) -> None:
        """Refuse to lock where the lock would end with its own statement."""

    def _acquire_steps(self, call: LockCall) -> Steps[bool]:
        self._check_transaction()
        value = yield from self._value(self._bind, call.sql, call.params)
        got = acquired_from(call, value)
        if got:
            self._token = value if call.returns_token else None
        return got
