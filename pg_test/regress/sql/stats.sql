--
-- Per-name statistics (DESIGN.md section 3, README "Statistics"), in one session:
-- the named_lock_stats view, named_lock_stats_reset() (not granted to PUBLIC) and the
-- superuser setting pg_named_locks.track_stats. Counters live in shared memory for the
-- whole cluster, so this test only looks at its own names ('st-...').
--
-- Every counter here comes from a deterministic single-session script. Contention comes
-- from a PREPARED transaction, which keeps its transaction locks, owned by no session,
-- until ROLLBACK PREPARED: calls on them fail (try) or time out deterministically. Waits
-- that end in a grant need a second session: see isolation/specs/stats_contention.spec.
--
CREATE TEMP VIEW my_locks AS
SELECT classid::bigint AS classid, objid::bigint AS objid, objsubid, mode, granted
FROM pg_locks
WHERE locktype = 'advisory' AND pid = pg_backend_pid();

-- This test's rows, without the timestamps.
CREATE TEMP VIEW st AS
SELECT lock_name, key_kind, acquisitions, immediate_acquisitions AS immediate, waits,
       total_wait_ms, max_wait_ms, try_failures, timeouts,
       last_acquired IS NOT NULL AS acquired
FROM named_lock_stats
WHERE lock_name LIKE 'st-%';

-- The view's columns.
SELECT attname, format_type(atttypid, atttypmod)
FROM pg_attribute
WHERE attrelid = 'named_lock_stats'::regclass AND attnum > 0
ORDER BY attnum;

SHOW pg_named_locks.track_stats;
SELECT named_lock_stats_reset();
SELECT set_config('regress.t0', clock_timestamp()::text, false) IS NOT NULL AS started;

--
-- Acquisitions that did not wait count as acquisitions and immediate acquisitions,
-- re-entrant ones too; unlocks count nothing.
--
SELECT lock_named('st-a');
SELECT lock_named('st-a');
SELECT try_lock_named('st-a');
SELECT lock_named('st-a', '1s');
SELECT unlock_named('st-a'), unlock_named('st-a'), unlock_named('st-a'), unlock_named('st-a');
SELECT lock_named_shared('st-s'), try_lock_named_shared('st-s');
SELECT unlock_named_shared('st-s'), unlock_named_shared('st-s');
BEGIN;
SELECT xact_lock_named('st-x'), try_xact_lock_named('st-x'), xact_lock_named_shared('st-x', '0');
COMMIT;
-- pairs: (namespace, name) has its own row; (namespace, id) counts on the namespace's
SELECT lock_pair('st-ns', 'st-item'), lock_pair('st-ns', 1), lock_pair_shared('st-ns', 2),
       try_lock_pair('st-ns', 3);
SELECT unlock_pair('st-ns', 'st-item'), unlock_pair('st-ns', 1), unlock_pair_shared('st-ns', 2),
       unlock_pair('st-ns', 3);
-- _many: one per distinct name
SELECT lock_many(ARRAY['st-m1', 'st-m2', 'st-m1']);
SELECT try_lock_many(ARRAY['st-m1', 'st-m3']);
SELECT unlock_many(ARRAY['st-m1', 'st-m2', 'st-m3']), unlock_named('st-m1');
-- a registered name that was never locked has a row of zeros
SELECT register_lock_name('st-registered') = named_lock_key('st-registered') AS registered;
-- a call that fails on its arguments counts nothing and does not remember the name
SELECT lock_named('st-bad-timeout', '-1s');
SELECT lock_many(ARRAY['st-bad-array', NULL]);
SELECT count(*) AS locks_held FROM my_locks;

SELECT * FROM st ORDER BY lock_name;

--
-- Try failures and timeouts. The prepared transaction holds 'st-busy' (which counts as
-- one immediate acquisition of this session's).
--
BEGIN;
SELECT xact_lock_named('st-busy');
PREPARE TRANSACTION 'regress_named_locks_stats';
-- try failures: try_lock_named, a zero timeout (a try), a failed try_lock_many
SELECT try_lock_named('st-busy'), try_lock_named_shared('st-busy'), lock_named('st-busy', '0');
SELECT try_lock_many(ARRAY['st-m4', 'st-busy', 'st-m5']);
-- timeouts: a timed call that returned false
SELECT lock_named('st-busy', '20ms'), lock_named_shared('st-busy', '20ms');
SELECT lock_many(ARRAY['st-m4', 'st-busy', 'st-m5'], '20ms');
BEGIN;
SELECT xact_lock_many(ARRAY['st-m4', 'st-busy', 'st-m5'], '20ms');
COMMIT;
-- an error is neither: the session's lock_timeout and statement_timeout raise
\set VERBOSITY terse
SET lock_timeout = '20ms';
SELECT lock_named('st-busy');
SELECT lock_many(ARRAY['st-m4', 'st-busy', 'st-m5']);
RESET lock_timeout;
SET statement_timeout = '50ms';
SELECT lock_named('st-busy', '1h');
RESET statement_timeout;
\set VERBOSITY default
SELECT count(*) AS locks_held FROM my_locks;
ROLLBACK PREPARED 'regress_named_locks_stats';

-- The failed all-or-nothing calls counted only their try failure or timeout, on
-- 'st-busy': 'st-m4' and 'st-m5' were taken and given back, and count nothing.
SELECT * FROM st ORDER BY lock_name;
-- (last_acquired may come from a coarse clock: allow a second)
SELECT bool_and(last_acquired BETWEEN current_setting('regress.t0')::timestamptz - interval '1s'
                                  AND clock_timestamp() + interval '1s')
       AS last_acquired_in_this_test
FROM named_lock_stats WHERE lock_name LIKE 'st-%' AND acquisitions > 0;

--
-- track_stats = off: nothing is counted (names are still remembered and their holders
-- shown); on again: counting resumes.
--
SET pg_named_locks.track_stats = off;
SHOW pg_named_locks.track_stats;
SELECT lock_named('st-a'), try_lock_named('st-a'), lock_many(ARRAY['st-m1', 'st-new-while-off']);
SELECT named_lock_holders('st-new-while-off') = ARRAY[pg_backend_pid()] AS holder_shown;
SELECT unlock_named('st-a'), unlock_named('st-a'), unlock_many(ARRAY['st-m1', 'st-new-while-off']);
SELECT lock_name, acquisitions, immediate, try_failures FROM st
WHERE lock_name IN ('st-a', 'st-m1', 'st-new-while-off') ORDER BY lock_name;
RESET pg_named_locks.track_stats;
SHOW pg_named_locks.track_stats;
SELECT lock_named('st-a'), unlock_named('st-a');
SELECT lock_name, acquisitions, immediate FROM st WHERE lock_name = 'st-a';

--
-- named_lock_stats_reset(): not executable by PUBLIC; the view and its function are.
--
SELECT has_function_privilege('public', 'named_lock_stats_reset()', 'EXECUTE') AS public_may_reset,
       has_function_privilege('public', 'named_lock_stats()', 'EXECUTE') AS public_may_read_fn,
       has_table_privilege('public', 'named_lock_stats', 'SELECT') AS public_may_read_view;

CREATE ROLE regress_named_locks_stats_user;
SET ROLE regress_named_locks_stats_user;
SELECT named_lock_stats_reset();
SET pg_named_locks.track_stats = off;
\set VERBOSITY sqlstate
SELECT named_lock_stats_reset();
SET pg_named_locks.track_stats = off;
\set VERBOSITY default
-- the role reads the view; names last used by other roles are hidden from it
SELECT count(*) > 0 AS has_rows FROM named_lock_stats;
SELECT count(*) AS st_names_visible FROM named_lock_stats WHERE lock_name LIKE 'st-%';
SELECT lock_named('st-role'), unlock_named('st-role');
SELECT lock_name, acquisitions, immediate_acquisitions FROM named_lock_stats
WHERE lock_name LIKE 'st-%';
RESET ROLE;

-- A superuser resets: every counter zero, last_acquired NULL; the names stay.
SELECT count(*) AS st_rows FROM st;
SELECT named_lock_stats_reset();
SELECT count(*) AS st_rows,
       count(*) FILTER (WHERE acquisitions = 0 AND immediate = 0 AND waits = 0
                          AND total_wait_ms = 0 AND max_wait_ms = 0 AND try_failures = 0
                          AND timeouts = 0 AND NOT acquired) AS zeroed
FROM st;
-- counting goes on from zero
SELECT lock_named('st-a'), unlock_named('st-a');
SELECT lock_name, acquisitions, immediate FROM st WHERE acquisitions > 0;

-- EXECUTE can be granted to a monitoring role.
GRANT EXECUTE ON FUNCTION named_lock_stats_reset() TO regress_named_locks_stats_user;
SET ROLE regress_named_locks_stats_user;
SELECT named_lock_stats_reset();
RESET ROLE;
SELECT count(*) FILTER (WHERE acquisitions > 0) AS counted FROM st;
REVOKE EXECUTE ON FUNCTION named_lock_stats_reset() FROM regress_named_locks_stats_user;
DROP ROLE regress_named_locks_stats_user;
SELECT count(*) AS locks_held FROM my_locks;
