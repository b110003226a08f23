"""What a soak session holds, and the SQL of the operations it runs.

The model is the client's own account of its locks, updated only from call outcomes; the
soak driver compares it with what the server reports. Lock identities are
(tag, mode): tag = (classid, objid, objsubid) exactly as pg_locks shows an advisory lock
(unsigned 32-bit halves), mode = 'ExclusiveLock' | 'ShareLock'.
"""

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field

EXCL = "ExclusiveLock"
SHARE = "ShareLock"
U32 = 0xFFFFFFFF


def key64(name):
    """named_lock_key: the first 8 bytes of md5(name), signed big-endian (the contract)."""
    return int.from_bytes(hashlib.md5(name.encode()).digest()[:8], "big", signed=True)


def key32(name):
    return int.from_bytes(hashlib.md5(name.encode()).digest()[:4], "big", signed=True)


def lit(s):
    return "'" + s.replace("'", "''") + "'"


@dataclass(frozen=True)
class Target:
    """One lockable resource: a name, (namespace, name) or (namespace, id)."""

    kind: str  # 'bigint' | 'pair' | 'pair_id'
    ns: str = None
    name: str = None
    id: int = None

    @property
    def tag(self):
        if self.kind == "bigint":
            k = key64(self.name)
            return ((k >> 32) & U32, k & U32, 1)
        k2 = key32(self.name) if self.kind == "pair" else self.id
        return (key32(self.ns) & U32, k2 & U32, 2)

    @property
    def label(self):
        """The lock_name advisory_locks_v shows for this lock."""
        if self.kind == "bigint":
            return self.name
        return f"{self.ns}:{self.name if self.kind == 'pair' else self.id}"

    @property
    def reg(self):
        """(key_kind, lock_name) of the registry entry (and named_lock_stats row) it counts in."""
        if self.kind == "bigint":
            return ("bigint", self.name)
        if self.kind == "pair":
            return ("pair", f"{self.ns}:{self.name}")
        return ("namespace", self.ns)

    @property
    def family(self):
        return "named" if self.kind == "bigint" else "pair"

    @property
    def args(self):
        if self.kind == "bigint":
            return lit(self.name)
        if self.kind == "pair":
            return f"{lit(self.ns)}, {lit(self.name)}::text"
        return f"{lit(self.ns)}, {self.id}"

    @property
    def builtin_args(self):
        """Arguments of the built-in pg_advisory_* functions for the same lock tag."""
        if self.kind == "bigint":
            return str(key64(self.name))
        k2 = key32(self.name) if self.kind == "pair" else self.id
        return f"{key32(self.ns)}, {k2}"


def pool():
    # Names with a quote, a space and non-ASCII characters too: keys are md5 of the
    # UTF-8 bytes, and the SQL literal must survive quoting.
    names = [f"soak-{i:02d}" for i in range(10)] + ["soak n'10 ü", "soak-Ω-11"]
    namespaces = ["soak-acct", "soak-job", "soak-ü-res"]
    bigint = [Target("bigint", name=n) for n in names]
    pairs = [Target("pair", ns=ns, name=x) for ns in namespaces for x in ("a", "b", "c")]
    # a negative id: pg_locks shows it as an unsigned objid
    ids = [Target("pair_id", ns=ns, id=i) for ns in namespaces for i in (1, 2, 3, -7)]
    return bigint, pairs, ids


@dataclass
class Op:
    """One lock-function call. `ret` is what the call returns ('void' | 'bool' | 'int')."""

    kind: str  # counted under this name
    call: str  # the SQL expression of the call
    ret: str
    action: str  # 'acquire' | 'release'
    targets: list  # distinct Targets, in the order the server processes them
    mode: str
    scope: str = "session"  # 'session' | 'xact' (acquire only)
    wait: str = "forever"  # 'forever' | 'no' | 'timed0' | 'timed'
    named: bool = True  # an extension function (counted in named_lock_stats)

    @property
    def sql(self):
        """The call wrapped so that its completion and result reach the client even when
        the statement fails afterwards (a cancel can land after the call returned, at the
        executor's next interrupt check, and the row is then lost): the call's value is
        passed to pg_cancel_backend of a negative, impossible pid, whose WARNING "PID -n
        is not a PostgreSQL …" is sent at once, with no interrupt check between the
        call's return and the warning."""
        if self.ret == "void":
            return f"SELECT pg_cancel_backend(CASE WHEN ({self.call}) IS NULL THEN -4 ELSE -1 END)"
        if self.ret == "bool":
            return f"SELECT pg_cancel_backend(CASE ({self.call}) WHEN true THEN -2 WHEN false THEN -3 ELSE -5 END)"
        return f"SELECT pg_cancel_backend(-1000 - coalesce(({self.call}), -1))"

    @staticmethod
    def decode(marker, ret):
        """The call's result from its marker pid (None: the call returned NULL)."""
        if ret == "void":
            return True if marker in (-1, -4) else None
        if ret == "bool":
            return {-2: True, -3: False}.get(marker)
        n = -1000 - marker
        return None if n == -1 else n


MARKER_RE = re.compile(r"^PID (-\d+) is not a PostgreSQL (backend|server) process$")
DONT_OWN_RE = re.compile(r"^you don't own a lock of type (\w+)$")


@dataclass
class Model:
    """Locks one session holds: session holds counted (re-entrant), transaction holds
    until the transaction ends."""

    session: Counter = field(default_factory=Counter)
    xact: set = field(default_factory=set)

    def holds(self, tag, mode):
        return self.session[(tag, mode)] > 0 or (tag, mode) in self.xact

    def expected_locks(self):
        """The (tag, mode) pairs pg_locks must show granted for this session."""
        return {k for k, n in self.session.items() if n > 0} | set(self.xact)

    def session_holds(self):
        return sum(n for n in self.session.values() if n > 0)

    def reset(self):
        self.session.clear()
        self.xact.clear()

    def prune(self):
        for k in [k for k, n in self.session.items() if n <= 0]:
            del self.session[k]
