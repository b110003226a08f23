"""Issue 16: fencing tokens stop a writer that lost its lock. Worker A takes
lock_named_fenced('job:N') on connection 1 and writes through connection 2 (a pool's);
connection 1 is terminated; worker B takes the lock (a larger token) and writes; A's
next write through connection 2 is rejected by the BEFORE UPDATE trigger of the README's
pattern; B's write stands (no lost update)."""

import uuid

import psycopg
import pytest

from helpers import backend_pid, wait_until
from pgtest_util import one

TRIGGER = """
CREATE TABLE {t} (id int PRIMARY KEY, state text, fence bigint NOT NULL DEFAULT 0);
CREATE FUNCTION {t}_fence() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.fence < OLD.fence THEN
        RAISE EXCEPTION 'stale fencing token % (row written under %)', NEW.fence, OLD.fence
            USING ERRCODE = '55P03';
    END IF;
    PERFORM named_lock_assert('{t}:' || NEW.id, NEW.fence);
    RETURN NEW;
END $$;
CREATE TRIGGER {t}_fence BEFORE UPDATE ON {t} FOR EACH ROW EXECUTE FUNCTION {t}_fence();
INSERT INTO {t} VALUES (1, 'new', 0);
"""


@pytest.fixture
def jobs(admin):
    t = "jobs_" + uuid.uuid4().hex[:8]
    admin.execute(TRIGGER.format(t=t))
    yield t
    admin.execute(f"DROP TABLE {t} CASCADE")
    admin.execute(f"DROP FUNCTION {t}_fence()")


def write(conn, table, state, token):
    conn.execute(f"UPDATE {table} SET state = %s, fence = %s WHERE id = 1", (state, token))


def test_a_terminated_holder_cannot_write_after_the_next_grant(main, admin, jobs):
    name = f"{jobs}:1"
    lock_a, pool_a = main(), main()
    token_a = one(lock_a, "SELECT lock_named_fenced(%s)", (name,))
    write(pool_a, jobs, "a-1", token_a)
    assert one(admin, "SELECT named_lock_check(%s, %s)", (name, token_a)) is True

    # A's lock connection dies; the lock goes with it
    admin.execute("SELECT pg_terminate_backend(%s)", (backend_pid(lock_a),))
    wait_until(lambda: one(admin, "SELECT NOT named_lock_check(%s, %s)", (name, token_a)), what="A's lock released")

    lock_b, pool_b = main(), main()
    token_b = one(lock_b, "SELECT lock_named_fenced(%s)", (name,))
    assert token_b > token_a
    write(pool_b, jobs, "b-1", token_b)

    # A does not know it lost the lock: its next write is rejected
    with pytest.raises(psycopg.errors.LockNotAvailable):
        write(pool_a, jobs, "a-2", token_a)
    assert one(admin, f"SELECT state || ',' || (fence = %s)::text FROM {jobs} WHERE id = 1", (token_b,)) == "b-1,true"
    one(lock_b, "SELECT unlock_named(%s)", (name,))


def test_a_write_after_the_lock_was_released_is_rejected(main, admin, jobs):
    """Even before anybody else takes the lock: the token no longer holds it."""
    name = f"{jobs}:1"
    lock_a, pool_a = main(), main()
    token = one(lock_a, "SELECT lock_named_fenced(%s)", (name,))
    write(pool_a, jobs, "a-1", token)
    one(lock_a, "SELECT unlock_named(%s)", (name,))
    with pytest.raises(psycopg.errors.LockNotAvailable):
        write(pool_a, jobs, "a-2", token)
    # a plain grant by another session does not revive the old token
    other = main()
    other.execute("SELECT lock_named(%s)", (name,))
    with pytest.raises(psycopg.errors.LockNotAvailable):
        write(pool_a, jobs, "a-3", token)
    assert one(admin, f"SELECT state FROM {jobs} WHERE id = 1") == "a-1"
    other.execute("SELECT unlock_named(%s)", (name,))


def test_tokens_from_concurrent_sessions_are_unique_and_ordered_by_grant(main, admin):
    """Eight sessions take one name in turn many times: every token is new, and each
    grant's token is larger than the one before it (the order the lock was held in)."""
    name = "fence-order-" + uuid.uuid4().hex[:8]
    conns = [main() for _ in range(8)]
    seen = []
    for i in range(400):
        c = conns[i % len(conns)]
        seen.append(one(c, "SELECT lock_named_fenced(%s)", (name,)))
        one(c, "SELECT unlock_named(%s)", (name,))
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
