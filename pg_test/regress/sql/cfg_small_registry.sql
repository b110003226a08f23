-- Capacity and eviction, on a server with pg_named_locks.max_names = 16.
SHOW pg_named_locks.max_names;
SELECT storage, capacity, names FROM named_lock_registry_info();

-- Fill the registry with names nobody holds.
SELECT count(register_lock_name('free-' || i)) FROM generate_series(1, 16) i;
-- Use free-1 again, so it is no longer the least recently used (use times come from a
-- coarse clock with a few milliseconds of resolution: let one tick pass).
SELECT pg_sleep(0.05);
SELECT register_lock_name('free-1') = named_lock_key('free-1') AS used_again;
SELECT names, evictions, not_stored FROM named_lock_registry_info();

-- Full: a new name evicts the least recently used unheld name (a quarter, at least one).
SELECT register_lock_name('new-17') = named_lock_key('new-17') AS registered;
SELECT names, evictions, not_stored FROM named_lock_registry_info();
SELECT named_lock_name(named_lock_key('free-1')) AS recently_used,
       named_lock_name(named_lock_key('free-2')) AS evicted,
       named_lock_name(named_lock_key('new-17')) AS added;

-- Names of held locks are never evicted: hold 16, and the registry is all held names.
SELECT bool_and(try_lock_named('held-' || i)) FROM generate_series(1, 16) i;
SELECT count(*) AS held_names FROM named_lock_registry() WHERE lock_name LIKE 'held-%';

-- Nothing can be evicted: the lock is still taken, the name is not stored, and the
-- WARNING comes once per session.
SELECT try_lock_named('held-17');
SELECT try_lock_named('held-18');
SELECT names, not_stored FROM named_lock_registry_info();
SELECT count(*) AS locks, count(lock_name) AS named
  FROM advisory_locks_v WHERE pid = pg_backend_pid();
SELECT named_lock_holders('held-17') = ARRAY[pg_backend_pid()] AS held_17_is_held;

-- Once the locks are gone, their names can make room again.
SELECT pg_advisory_unlock_all();
SELECT register_lock_name('after-unlock') = named_lock_key('after-unlock') AS registered;
SELECT named_lock_name(named_lock_key('after-unlock'));
