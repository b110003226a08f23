"""Issue 16: fencing tokens across the failover of a primary to its streaming standby
(pg_basebackup -R -X stream, asynchronous), promoted with pg_ctl promote after the
primary was SIGKILLed. The promoted server runs on a new timeline, so its tokens are
larger than every token the old primary handed out, also those it handed out after the
base backup and never replicated (grants write no WAL), so many that the old primary's
counter is past the one the standby's copy of the fence file starts from; the trigger
pattern refuses the old primary's writer on the new primary. Then the same once more: a standby of the new
primary, promoted to a third timeline. In between, the promoted server crash-restarts
(pg_ctl restart -m immediate) and stays on its timeline, its tokens still growing."""

import os
import uuid

import psycopg
from cluster import one, sqlstate
from fencing import (
    FENCE_FILE,
    NOT_HELD,
    STALE,
    assert_standby_refuses_tokens,
    grants,
    outrun_copy,
    row,
    setup_protected_table,
    timeline,
    tl_of,
    wait_replayed,
    wait_streaming_async,
    write_row,
)

PRIMARY_CONF = ["wal_level = replica", "hot_standby = on", "max_wal_senders = 4", "wal_keep_size = '64MB'"]


def test_promoted_standby_outranks_every_token_of_the_old_primary(server, connect, preload):
    u = uuid.uuid4().hex[:8]
    names = [f"fo-{u}-{i}" for i in range(7)]
    row_lock = f"fo-{u}-row1"

    primary = server("primary")
    primary.init(*preload, *PRIMARY_CONF)
    primary.start()
    p1, p2 = connect(primary), connect(primary)
    setup_protected_table(p1)
    assert timeline(p1) == 1
    before = grants([p1, p2], names, 200)
    assert {tl_of(t) for t in before} == {1}
    # the protected row, first written under a fenced grant
    first = one(p1, "SELECT lock_named_fenced(%s)", (row_lock,))
    assert first > max(before)
    p1.execute("INSERT INTO fenced_rows VALUES (1, %s, %s, 'first')", (row_lock, first))
    assert one(p1, "SELECT unlock_named(%s)", (row_lock,)) is True

    standby = server("standby")
    standby.basebackup_from(primary)
    standby.start()
    s = connect(standby)
    assert one(s, "SELECT pg_is_in_recovery()") is True
    wait_streaming_async(p1, "standby")

    # Grants after the base backup: the standby knows nothing of them. So many that the
    # primary's counter passes the one the standby's copy of the fence file starts from.
    after = grants([p1, p2], names, 200)
    assert min(after) > max(before)
    after.append(outrun_copy(p1, names[0], standby.data))
    # The old primary's writer: holds the row's lock, writes under its token; the write
    # replicates (replay awaited) and the writer stays, a zombie once the primary dies.
    zombie = connect(primary)
    zt = one(zombie, "SELECT lock_named_fenced(%s)", (row_lock,))
    assert zt > max(after)
    assert write_row(zombie, 1, zt, "old primary") is None
    wait_replayed(p1, s, "the standby to replay the old primary's write")
    assert row(s, 1) == (zt, "old primary")
    # A hot standby refuses tokens (25006); the token functions answer there.
    assert_standby_refuses_tokens(s, row_lock)
    assert one(s, "SELECT named_lock_check(%s, %s)", (row_lock, zt)) is False
    try:
        s.execute("SELECT named_lock_assert(%s, %s)", (row_lock, zt))
        raise AssertionError("named_lock_assert passed on a standby where nothing is held")
    except psycopg.Error as e:
        assert sqlstate(e) == NOT_HELD, repr(e)
    # And more grants, the last ones of the old primary.
    last = grants([p1, p2], names, 50)
    old = before + after + [first, zt] + last
    assert max(old) == last[-1]

    primary.kill_hard()
    standby.promote()

    # The session opened on the standby during recovery takes tokens now, on timeline 2.
    assert one(s, "SELECT pg_is_in_recovery()") is False
    n1, n2 = connect(standby), connect(standby)
    tl = timeline(n1)
    assert tl == 2
    t = one(s, "SELECT lock_named_fenced(%s)", (names[0],))
    assert tl_of(t) == tl and t > max(old)
    assert one(s, "SELECT unlock_named(%s)", (names[0],)) is True
    new = grants([n1, n2, s], names, 200)
    assert min(new) > t
    assert {tl_of(x) for x in new} == {tl}
    assert os.path.exists(os.path.join(standby.data, FENCE_FILE))

    # The trigger pattern on the new primary. The zombie's token (the row's last write)
    # is not older than the row, but its grant holds nothing here: refused.
    assert row(n1, 1) == (zt, "old primary")
    assert write_row(n1, 1, zt, "zombie") == NOT_HELD
    assert write_row(n1, 1, max(old), "zombie") == NOT_HELD
    holder = connect(standby)
    nt = one(holder, "SELECT lock_named_fenced(%s)", (row_lock,))
    assert nt > max(new)
    assert write_row(n1, 1, zt, "zombie") == NOT_HELD  # also while the new holder holds it
    assert write_row(holder, 1, nt, "new primary") is None
    assert row(n1, 1) == (nt, "new primary")
    # every old token is now older than the row's last write
    assert write_row(n1, 1, zt, "zombie") == STALE
    assert write_row(n1, 1, max(old), "zombie") == STALE
    assert row(n1, 1) == (nt, "new primary")
    assert one(holder, "SELECT unlock_named(%s)", (row_lock,)) is True

    # The promoted server's crash recovery keeps it on timeline 2, its counter above
    # what it handed out since the promotion.
    for c in (s, n1, n2, holder):
        c.close()
    standby.restart("immediate")
    n1, n2 = connect(standby), connect(standby)
    assert timeline(n1) == 2
    recovered = grants([n1, n2], names, 50)
    assert min(recovered) > nt
    assert {tl_of(x) for x in recovered} == {2}
    assert write_row(n1, 1, nt, "lost its lock in the crash") == NOT_HELD

    # Once more: a standby of the new primary, promoted after it was SIGKILLed, runs on
    # timeline 3 and outranks timeline 2 (and 1).
    standby2 = server("standby2")
    standby2.basebackup_from(standby)
    standby2.start()
    s2 = connect(standby2)
    wait_streaming_async(n1, "standby2")
    more = grants([n1, n2], names, 50)
    holder2 = connect(standby)
    ht = one(holder2, "SELECT lock_named_fenced(%s)", (row_lock,))
    assert write_row(holder2, 1, ht, "second primary") is None
    wait_replayed(n1, s2, "the second standby to replay the write")
    assert_standby_refuses_tokens(s2, row_lock)
    tl2_max = max([*new, nt, *recovered, *more, ht])
    standby.kill_hard()
    standby2.promote()
    m1, m2 = connect(standby2), connect(standby2)
    assert timeline(m1) == 3
    third = grants([m1, m2], names, 50)
    assert min(third) > tl2_max > max(old)
    assert {tl_of(x) for x in third} == {3}
    assert write_row(m1, 1, ht, "zombie 2") == NOT_HELD
    holder3 = connect(standby2)
    t3 = one(holder3, "SELECT lock_named_fenced(%s)", (row_lock,))
    assert write_row(holder3, 1, t3, "third primary") is None
    assert write_row(m1, 1, ht, "zombie 2") == STALE
    assert row(m2, 1) == (t3, "third primary")
