-- Eviction in a registry large enough to be sampled, on a server with
-- pg_named_locks.max_names = 4096: an eviction pass reads the age of evenly spaced
-- slots only, takes the quantile of a quarter of the candidates among them as its
-- cut-off, and frees the names at or below it. It must still free only the oldest.
SHOW pg_named_locks.max_names;

-- An old cohort fills the registry.
SELECT count(register_lock_name('old-' || i)) FROM generate_series(1, 4096) i;
SELECT names, evictions FROM named_lock_registry_info();

-- Use times come from a coarse clock with a few milliseconds of resolution: let the
-- new cohort be clearly younger.
SELECT pg_sleep(0.05);

-- A new cohort half the registry's size: at least two passes of about a quarter each.
SELECT count(register_lock_name('new-' || i)) FROM generate_series(1, 2048) i;
SELECT names + evictions = 4096 + 2048 AS accounted, evictions >= 2048 AS evicted_enough,
       evictions <= 2048 + 1024 AS evicted_at_most_a_pass_more
  FROM named_lock_registry_info();

-- No new name went; every name that went was old.
SELECT count(*) AS new_names_evicted
  FROM generate_series(1, 2048) i
 WHERE named_lock_name(named_lock_key('new-' || i)) IS NULL;
SELECT (SELECT count(*) FROM generate_series(1, 4096) i
         WHERE named_lock_name(named_lock_key('old-' || i)) IS NOT NULL)
       + (SELECT evictions FROM named_lock_registry_info()) = 4096 AS only_old_names_evicted;
