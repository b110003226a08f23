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

from fencing import (
    FENCE_FILE,
    NOT_HELD,
    first_write,
    grants,
    outrun_copy,
    replicated_write,
    row,
    timeline,
    tl_of,
    tokens_after_promotion,
    trigger_refuses_old_tokens,
    wait_streaming_async,
    write_row,
)
from pgtest_util import one, sqlstate

PRIMARY_CONF = ["wal_level = replica", "hot_standby = on", "max_wal_senders = 4", "wal_keep_size = '64MB'"]


def test_promoted_standby_outranks_every_token_of_the_old_primary(server, connect, preload):
    u = uuid.uuid4().hex[:8]
    names = [f"fo-{u}-{i}" for i in range(7)]
    row_lock = f"fo-{u}-row1"

    primary = server("primary")
    primary.init(*preload, *PRIMARY_CONF)
    primary.start()
    p1, p2 = connect(primary), connect(primary)
    # the protected row, first written under a fenced grant
    before, first = first_write([p1, p2], names, row_lock, 200)

    standby = server("standby")
    standby.basebackup_from(primary)
    standby.start()
    s = connect(standby)
    assert one(s, "SELECT pg_is_in_recovery()") is True
    wait_streaming_async(p1, "standby")

    # Grants after the base backup: the standby knows nothing of them. So many that the
    # primary's counter passes the one the standby's copy of the fence file starts from.
    after = grants([p1, p2], names, 200)
    assert min(after) > first
    after.append(outrun_copy(p1, names[0], standby.data))
    # The old primary's writer: holds the row's lock, writes under its token; the write
    # replicates (replay awaited) and the writer stays, a zombie once the primary dies.
    # A hot standby refuses tokens (25006); the token functions answer there.
    zombie = connect(primary)
    zt = replicated_write(p1, zombie, s, row_lock, "old primary")
    assert zt > max(after)
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
    new = tokens_after_promotion(s, [n1, n2, s], names, 200, old, tl=2)
    assert os.path.exists(os.path.join(standby.data, FENCE_FILE))

    # The trigger pattern on the new primary. The zombie's token (the row's last write)
    # is not older than the row, but its grant holds nothing here: refused, also while
    # the new holder holds the lock; once the holder wrote the row, every old token is
    # older than the row's last write.
    assert row(n1, 1) == (zt, "old primary")
    holder = connect(standby)
    nt = trigger_refuses_old_tokens(n1, holder, row_lock, (zt, max(old)), "new primary")
    assert nt > max(new)
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
    ht = replicated_write(n1, holder2, s2, row_lock, "second primary")
    tl2_max = max([*new, nt, *recovered, *more, ht])
    standby.kill_hard()
    standby2.promote()
    m1, m2 = connect(standby2), connect(standby2)
    assert timeline(m1) == 3
    third = grants([m1, m2], names, 50)
    assert min(third) > tl2_max > max(old)
    assert {tl_of(x) for x in third} == {3}
    holder3 = connect(standby2)
    t3 = trigger_refuses_old_tokens(m1, holder3, row_lock, (ht,), "third primary")
    assert row(m2, 1) == (t3, "third primary")
