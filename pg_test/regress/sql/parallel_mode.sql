--
-- Lock functions in parallel mode (DESIGN.md sections 2 and 4: "exactly like the
-- built-ins"). The lock functions are PARALLEL RESTRICTED, so they never run in a
-- parallel worker, but the leader runs them while it is in parallel mode: above a
-- Gather node, or for any query under debug_parallel_query (force_parallel_mode before
-- PostgreSQL 16). Since PostgreSQL 13 the built-in advisory lock functions work there
-- (the old "cannot use advisory locks during a parallel operation" check is gone), so
-- the named lock functions must work there as well. The key functions are PARALLEL SAFE.
--
CREATE TEMP VIEW my_locks AS
SELECT classid::bigint AS classid, objid::bigint AS objid, objsubid, mode, granted
FROM pg_locks
WHERE locktype = 'advisory' AND pid = pg_backend_pid();

-- A parallel plan: the lock function is evaluated by the leader, in the Gather node.
CREATE TABLE par_jobs AS SELECT g AS id, 'par-job-' || g AS name FROM generate_series(1, 10000) AS g;
ANALYZE par_jobs;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
EXPLAIN (COSTS OFF, VERBOSE)
SELECT count(*) AS locked, bool_and(l) AS all_true
FROM (SELECT try_lock_named(name) AS l FROM par_jobs WHERE id % 1000 = 0) AS s;

-- the built-in on the same keys
SELECT count(*) AS locked, bool_and(l) AS all_true
FROM (SELECT pg_try_advisory_lock(named_lock_key(name)) AS l FROM par_jobs WHERE id % 1000 = 0) AS s;
SELECT count(*) AS locks_held FROM my_locks;
SELECT pg_advisory_unlock_all();
-- the named lock functions
SELECT count(*) AS locked, bool_and(l) AS all_true
FROM (SELECT try_lock_named(name) AS l FROM par_jobs WHERE id % 1000 = 0) AS s;
SELECT count(*) AS locks_held FROM my_locks;
SELECT count(*) AS unlocked, bool_and(u) AS all_true
FROM (SELECT unlock_named(name) AS u FROM par_jobs WHERE id % 1000 = 0) AS s;
SELECT count(*) AS locked, bool_and(l) AS all_true
FROM (SELECT try_lock_pair('par-jobs', id) AS l FROM par_jobs WHERE id % 1000 = 0) AS s;
SELECT count(*) AS unlocked, bool_and(u) AS all_true
FROM (SELECT unlock_pair('par-jobs', id) AS u FROM par_jobs WHERE id % 1000 = 0) AS s;
SELECT count(*) AS locks_held FROM my_locks;
-- the key functions may even run in the workers
EXPLAIN (COSTS OFF, VERBOSE)
SELECT count(*) FROM par_jobs WHERE named_lock_key(name) % 7 = 0;
SELECT count(*) = count(*) FILTER (WHERE named_lock_key(name) = ('x' || substr(md5(name), 1, 16))::bit(64)::bigint)
       AS keys_ok
FROM par_jobs;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;
DROP TABLE par_jobs;

-- debug_parallel_query: every query runs in parallel mode.
SELECT set_config(CASE WHEN current_setting('server_version_num')::int >= 160000
                       THEN 'debug_parallel_query' ELSE 'force_parallel_mode' END,
                  'on', false) AS parallel_forced;
SELECT named_lock_key('in-parallel-mode') = ('x' || substr(md5('in-parallel-mode'), 1, 16))::bit(64)::bigint AS key_ok;
-- the built-ins
SELECT pg_advisory_lock(named_lock_key('in-parallel-mode'));
SELECT pg_advisory_unlock(named_lock_key('in-parallel-mode'));
-- the named lock functions
SELECT lock_named('in-parallel-mode');
SELECT unlock_named('in-parallel-mode');
SELECT try_lock_named_shared('in-parallel-mode');
SELECT unlock_named_shared('in-parallel-mode');
SELECT lock_pair('in-parallel-mode', 1);
SELECT unlock_pair('in-parallel-mode', 1);
BEGIN;
SELECT xact_lock_named('in-parallel-mode');
SELECT try_xact_lock_pair('in-parallel-mode', 'pair');
COMMIT;
SELECT set_config(CASE WHEN current_setting('server_version_num')::int >= 160000
                       THEN 'debug_parallel_query' ELSE 'force_parallel_mode' END,
                  'off', false) AS parallel_off;
SELECT count(*) AS locks_held FROM my_locks;
