"""Fencing tokens (lock.token) and leases (lease=, the renewal thread or task) of every
flavor, against the real server's lock_named_fenced / lock_named_lease / named_lock_renew."""

from __future__ import annotations

import asyncio
import time

import pytest

from pg_named_locks import LockLost

# -- fencing tokens ------------------------------------------------------------------


async def test_tokens_grow_across_grants_and_check_while_held(flavor, pool, pool2, observer, name):
    a = flavor.session_lock(pool, name)
    assert a.token is None
    assert await a.acquire()
    t1 = a.token
    assert isinstance(t1, int) and t1 > 0
    assert observer.check(name, t1), "named_lock_check(name, token) from another session"
    assert observer.scalar("SELECT named_lock_token(%s)", name) is None, "the observer holds nothing"
    assert await a.execute(f"SELECT named_lock_token('{name}')") == t1

    assert await a.acquire(blocking=False), "re-entrant"
    assert a.token == t1, "a re-entrant fenced grant keeps its token"
    assert await a.release() and a.token == t1 and observer.check(name, t1)
    assert await a.release()
    assert a.token is None and not observer.check(name, t1)

    b = flavor.session_lock(pool2, name)
    assert await b.acquire(timeout=5)
    t2 = b.token
    assert t2 > t1 and observer.check(name, t2) and not observer.check(name, t1)
    await b.release()

    c = flavor.session_lock(pool, name)
    assert await c.acquire(blocking=False)
    t3 = c.token
    assert t3 > t2 and observer.check(name, t3)
    await c.release()
    assert not observer.check(name, t3)


async def test_plain_grants_have_no_token(flavor, pool, observer, name):
    lock = flavor.session_lock(pool, name, fenced=False)
    assert await lock.acquire()
    assert lock.token is None
    assert await lock.execute(f"SELECT named_lock_token('{name}')") is None
    await lock.release()


async def test_a_plain_grant_after_a_fenced_one_invalidates_the_token(flavor, pool, pool2, observer, name):
    fenced = flavor.session_lock(pool, name)
    await fenced.acquire()
    token = fenced.token
    await fenced.release()
    plain = flavor.session_lock(pool2, name, fenced=False)
    await plain.acquire()
    assert not observer.check(name, token)
    await plain.release()


# -- leases --------------------------------------------------------------------------


async def test_renewal_keeps_a_1s_lease_alive_while_idle(flavor, pool, observer, name):
    lock = flavor.session_lock(pool, name, lease=1)
    assert await lock.acquire()
    pid = await lock.pid()
    token = lock.token
    assert token is not None and observer.check(name, token), "a leased lock has a token too"
    assert observer.scalar("SELECT lease_expires_at > now() FROM advisory_locks_v WHERE pid = %s", pid)
    assert observer.scalar("SELECT named_lock_hold_count(%s)", name) == 0
    assert await lock.execute(f"SELECT named_lock_hold_count('{name}')") == 1, "one hold per acquire"
    started = time.monotonic()
    while time.monotonic() - started < 3.0:  # three lease lengths, idle but for the renewals
        await asyncio.sleep(0.25)
        assert observer.alive(pid), "renewed: the server did not end the session"
    assert observer.state(pid) == "idle"
    assert lock.is_acquired and lock.lost is None
    assert observer.holders(name) == [pid] and observer.check(name, token)
    assert await lock.release()
    assert observer.holders(name) == []
    if flavor.sync:
        assert lock.lock._renewer is None
    # the lease ended with the unlock: the connection, back in the pool, lives on
    await asyncio.sleep(1.6)
    assert observer.alive(pid)


async def test_without_renewal_the_server_ends_the_session(flavor, pool, pool2, observer, name):
    lock = flavor.session_lock(pool, name, lease=1, auto_renew=False)
    assert await lock.acquire()
    pid = await lock.pid()
    t0 = time.monotonic()
    await observer.auntil("the server ends the idle session", lambda: not observer.alive(pid))
    assert time.monotonic() - t0 < 5
    assert observer.holders(name) == []
    await observer.auntil("is_acquired turns False", lambda: not lock.is_acquired)
    assert isinstance(lock.lost, LockLost) and lock.lost.name == name
    assert await lock.release() is False
    assert lock.lost is not None, "still says why"
    assert flavor.checked_out(pool) == 0
    # someone else gets the lock at once
    other = flavor.session_lock(pool2, name)
    assert await other.acquire(blocking=False)
    await other.release()


async def test_release_reports_a_lease_lost_unnoticed(flavor, pool, observer, name):
    """release() straight after the server ended the session, without asking
    is_acquired first: False, not an exception."""
    lock = flavor.session_lock(pool, name, lease=1, auto_renew=False)
    assert await lock.acquire()
    pid = await lock.pid()
    await observer.auntil("the server ends the idle session", lambda: not observer.alive(pid))
    assert await lock.release() is False
    assert lock.lost is not None and not lock.is_acquired
    assert flavor.checked_out(pool) == 0


async def test_manual_renewal(flavor, pool, observer, name):
    lock = flavor.session_lock(pool, name, lease=1, auto_renew=False)
    assert await lock.acquire()
    pid = await lock.pid()
    for _ in range(6):
        await asyncio.sleep(0.4)
        assert await lock.renew() is True
    assert observer.alive(pid) and observer.holders(name) == [pid]
    assert await lock.release()
    assert await lock.renew() is False, "not held"


async def test_a_lease_lost_inside_with_raises_at_the_end(flavor, pool, observer, name):
    lock = flavor.session_lock(pool, name, lease=1, auto_renew=False)
    with pytest.raises(LockLost):
        async with flavor.locked(lock):
            pid = await lock.pid()
            await observer.auntil("the server ends the idle session", lambda: not observer.alive(pid))
    assert flavor.checked_out(pool) == 0


async def test_leased_try_and_timeout(flavor, pool, pool2, observer, name):
    holder = flavor.session_lock(pool, name)
    await holder.acquire()
    leased = flavor.session_lock(pool2, name, lease=5)
    assert await leased.acquire(blocking=False) is False
    assert await leased.acquire(timeout=0.1) is False
    assert flavor.checked_out(pool2) == 0
    task = asyncio.create_task(leased.acquire(timeout=30))
    await observer.auntil("the leased acquire waits", lambda: observer.waiters(name))
    await holder.release()
    assert await asyncio.wait_for(task, 10) is True
    assert leased.token is not None and observer.check(name, leased.token)
    assert await leased.release()
