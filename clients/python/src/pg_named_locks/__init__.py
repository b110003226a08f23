"""Named PostgreSQL advisory locks: a client for the ``pg_named_locks`` extension.

Lock by text, not by a number every client has to invent. The driver-independent part
is here (no dependencies); the lock classes live in one module per driver:

* :mod:`pg_named_locks.psycopg` -- psycopg 3, synchronous and asyncio
  (``pip install 'pg-named-locks[psycopg]'``);
* :mod:`pg_named_locks.sqlalchemy` -- SQLAlchemy 2 asyncio with asyncpg
  (``pip install 'pg-named-locks[sqlalchemy]'``).

Each has a session lock class (``acquire(blocking=True, timeout=None) -> bool``,
``release() -> bool``, ``is_acquired``, ``token``, ``lease=``, ``with`` / ``async
with``), a transaction lock class and ``advisory_lock(bind, name, blocking=True)``, a
context manager that yields whether the lock was acquired.

>>> from pg_named_locks import lock_key
>>> lock_key("daily-report-job") == lock_key("daily-report-job")
True
"""

from ._core import (
    LockLost,
    LockNotAcquired,
    NamedLockError,
    Names,
    Seconds,
    lock_key,
    lock_key32,
    sqlstate,
)

__version__ = "0.3.0"

__all__ = [
    "LockLost",
    "LockNotAcquired",
    "NamedLockError",
    "Names",
    "Seconds",
    "__version__",
    "lock_key",
    "lock_key32",
    "sqlstate",
]
