"""DESIGN.md §5: a full registry evicts names of locks no longer held, and never the name
of a lock that some backend holds or awaits. Eviction finds the locks in use by walking
every process's own lock lists (not a pg_locks snapshot), so this checks each kind of
holder those lists have: another session's exclusive and shared session locks, both
two-key forms, a backend waiting for a lock, and a prepared transaction (whose locks
belong to a dummy process with no pid)."""

import uuid

from helpers import Bg, backend_pid, wait_waiting
from pgtest_util import one


def test_eviction_spares_every_lock_in_use_and_only_those(main, admin, gids):
    u = uuid.uuid4().hex[:8]
    held, shared, free = f"evict-{u}-held", f"evict-{u}-shared", f"evict-{u}-free"
    ns, idns, awaited, prepared = f"evict-{u}-ns", f"evict-{u}-idns", f"evict-{u}-awaited", f"evict-{u}-prepared"
    gid = f"faults-evict-{u}"
    gids.append(gid)

    holder, waiter, preparer = main(), main(), main()
    holder.execute("SELECT lock_named(%s), lock_named_shared(%s)", (held, shared))
    holder.execute("SELECT lock_pair(%s, 'item'), lock_pair(%s, 7)", (ns, idns))
    # The awaited name is registered by the waiter alone: the holder takes the lock by
    # key, with the built-in function.
    holder.execute("SELECT pg_advisory_lock(named_lock_key(%s))", (awaited,))
    wp = backend_pid(waiter)
    waiting = Bg(waiter, "SELECT lock_named(%s)", (awaited,))
    wait_waiting(admin, wp, waiting)
    preparer.execute("BEGIN")
    preparer.execute("SELECT xact_lock_named(%s)", (prepared,))
    preparer.execute(f"PREPARE TRANSACTION '{gid}'")
    admin.execute("SELECT register_lock_name(%s)", (free,))

    # Every one of these names is now among the oldest in the registry. Register twice
    # its capacity in new names: every old name that may go must go.
    capacity, evictions = admin.execute("SELECT capacity, evictions FROM named_lock_registry_info()").fetchone()
    filler = main()
    filler.execute("SELECT pg_sleep(0.05)")  # one tick of the coarse clock that ages names
    filler.execute(
        "SELECT count(register_lock_name(format('evict-%%s-fill-%%s', %s::text, i))) FROM generate_series(1, %s) i",
        (u, 2 * capacity),
    )
    assert one(admin, "SELECT evictions FROM named_lock_registry_info()") > evictions

    # The control: an old name nobody holds was evicted (so eviction did reach the old
    # names, and sparing the others below was a decision, not luck).
    assert one(admin, "SELECT named_lock_name(named_lock_key(%s))", (free,)) is None

    for name in (held, shared, awaited, prepared):
        assert one(admin, "SELECT named_lock_name(named_lock_key(%s))", (name,)) == name, name
    assert one(admin, "SELECT named_lock_name(named_lock_key32(%s), named_lock_key32('item'))", (ns,)) == f"{ns}:item"
    assert one(admin, "SELECT named_lock_name(named_lock_key32(%s), 7)", (idns,)) == f"{idns}:7"

    # And the view shows every one of them by name.
    names = {
        r[0] for r in admin.execute("SELECT lock_name FROM advisory_locks_v WHERE lock_name LIKE %s", (f"evict-{u}-%",))
    }
    assert names == {held, shared, f"{ns}:item", f"{idns}:7", awaited, prepared}

    holder.execute("SELECT pg_advisory_unlock_all()")
    assert waiting.result() is not None
