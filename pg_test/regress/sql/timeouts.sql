--
-- Per-call timeouts (DESIGN.md sections 3-4, README "Timeouts on one call"), in one
-- session: lock_named(text, interval), lock_named_shared(text, interval),
-- xact_lock_named(text, interval), xact_lock_named_shared(text, interval), the pair
-- family with (text, text, interval) and (text, int, interval), lock_many(text[],
-- interval) and xact_lock_many(text[], interval). true = locked; false = the timeout
-- passed and the call holds nothing it did not hold before; 0 = try; a negative
-- timeout is ERROR 22023, NULL is ERROR 22004; the caller's lock_timeout is unchanged.
--
-- Contention in a single session: a PREPARED transaction keeps the transaction-level
-- locks it took, owned by no session, until COMMIT/ROLLBACK PREPARED. Since it never
-- releases them during a call, a timed call on them deterministically times out.
-- Timings are never printed; where the length of a wait matters, only a lower bound is
-- checked.
--
CREATE TEMP VIEW my_locks AS
SELECT classid::bigint AS classid, objid::bigint AS objid, objsubid, mode, granted
FROM pg_locks
WHERE locktype = 'advisory' AND pid = pg_backend_pid();

-- SQLSTATE and message of a statement, and how many advisory locks this session holds
-- right after it (same helper as in errors.sql).
CREATE FUNCTION pg_temp.try_sql(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN format('%s: %s (locks held: %s)', SQLSTATE, SQLERRM,
                  (SELECT count(*) FROM pg_locks
                   WHERE locktype = 'advisory' AND pid = pg_backend_pid()));
END
$$;

SHOW lock_timeout;

--
-- Free locks: every timeout overload returns true and takes the same lock as the plain
-- function (session locks: released by unlock; transaction locks: by COMMIT).
--
SELECT lock_named('to-a', '1s') AS lock_named,
       lock_named_shared('to-b', '1s') AS lock_named_shared,
       lock_pair('to-ns', 'to-c', '1s') AS lock_pair_text,
       lock_pair('to-ns', 4, '1s') AS lock_pair_int,
       lock_pair_shared('to-ns', 'to-e', '1s') AS lock_pair_shared_text,
       lock_pair_shared('to-ns', 6, '1s') AS lock_pair_shared_int,
       lock_many(ARRAY['to-g', 'to-h'], '1s') AS lock_many;
SELECT objsubid, mode, granted, count(*) FROM my_locks GROUP BY 1, 2, 3 ORDER BY 1, 2;
SELECT unlock_named('to-a'), unlock_named_shared('to-b'), unlock_pair('to-ns', 'to-c'),
       unlock_pair('to-ns', 4), unlock_pair_shared('to-ns', 'to-e'),
       unlock_pair_shared('to-ns', 6), unlock_many(ARRAY['to-g', 'to-h']);
SELECT count(*) AS locks_held FROM my_locks;

BEGIN;
SELECT xact_lock_named('to-a', '1s') AS xact_lock_named,
       xact_lock_named_shared('to-b', '1s') AS xact_lock_named_shared,
       xact_lock_pair('to-ns', 'to-c', '1s') AS xact_lock_pair_text,
       xact_lock_pair('to-ns', 4, '1s') AS xact_lock_pair_int,
       xact_lock_pair_shared('to-ns', 'to-e', '1s') AS xact_lock_pair_shared_text,
       xact_lock_pair_shared('to-ns', 6, '1s') AS xact_lock_pair_shared_int,
       xact_lock_many(ARRAY['to-g', 'to-h'], '1s') AS xact_lock_many;
SELECT objsubid, mode, granted, count(*) FROM my_locks GROUP BY 1, 2, 3 ORDER BY 1, 2;
-- transaction locks are not session locks: unlock does not release them
SELECT unlock_named('to-a');
COMMIT;
SELECT count(*) AS locks_after_commit FROM my_locks;

-- The same lock tags as the plain functions and the built-ins.
SELECT lock_named('to-a', '1s');
SELECT count(*) AS rows_for_to_a,
       bool_and(classid = (named_lock_key('to-a') >> 32) & 4294967295
                AND objid = named_lock_key('to-a') & 4294967295 AND objsubid = 1) AS same_tag
FROM my_locks;
SELECT pg_advisory_unlock(named_lock_key('to-a')) AS builtin_unlock;
SELECT lock_pair('to-ns', -7, '1s');
SELECT classid = named_lock_key32('to-ns')::bigint & 4294967295 AS key1_ok,
       objid = -7::bigint & 4294967295 AS key2_ok, objsubid
FROM my_locks;
SELECT pg_advisory_unlock(named_lock_key32('to-ns'), -7) AS builtin_unlock;

-- Re-entrant and counted like the plain functions: two timed locks need two unlocks.
SELECT lock_named('to-a', '1s'), lock_named('to-a', '10ms');
SELECT count(*) AS rows_for_to_a FROM my_locks;
SELECT unlock_named('to-a');
SELECT unlock_named('to-a');
SELECT unlock_named('to-a');

-- Zero timeout on a free lock: like try_, true. Tiny and huge timeouts, and intervals
-- with days and months, are accepted.
SELECT lock_named('to-zero', '0') AS zero, lock_named('to-zero', '0 seconds') AS zero_seconds,
       lock_named('to-zero', '1 microsecond') AS one_microsecond,
       lock_named('to-zero', '1 day') AS one_day, lock_named('to-zero', '1 mon') AS one_month,
       lock_named('to-zero', '1000 years') AS thousand_years,
       lock_named('to-zero', '-1 day 25 hours') AS positive_total;
SELECT unlock_named('to-zero'), unlock_named('to-zero'), unlock_named('to-zero'),
       unlock_named('to-zero'), unlock_named('to-zero'), unlock_named('to-zero'),
       unlock_named('to-zero');
SELECT count(*) AS locks_held FROM my_locks;

--
-- Argument errors: NULL timeout 22004, negative timeout 22023; the name is checked
-- first. No lock is taken.
--
SELECT lock_named('to-a', NULL);
SELECT lock_named('to-a', '-1s');
SELECT lock_named('to-a', '-1 microsecond');
-- the total counts: 1 day - 25 hours is negative
SELECT lock_named('to-a', '1 day -25 hours');
SELECT lock_named(NULL, '1s');
SELECT lock_named('', NULL);
SELECT lock_many(NULL, '-1s');
SELECT lock_many(ARRAY['to-a'], NULL);
SELECT count(*) AS locks_held FROM my_locks;

SELECT f, a, pg_temp.try_sql(format('SELECT %s(%s)', f, a)) AS result
FROM unnest(ARRAY['lock_named', 'lock_named_shared', 'xact_lock_named',
                  'xact_lock_named_shared'])
         WITH ORDINALITY AS fns(f, fo),
     unnest(ARRAY[$$'to-a', NULL::interval$$, $$'to-a', '-1s'$$, $$NULL::text, '1s'$$,
                  $$'', '1s'$$, $$NULL::text, NULL::interval$$])
         WITH ORDINALITY AS args(a, ao)
ORDER BY fo, ao;

SELECT f, a, pg_temp.try_sql(format('SELECT %s(%s)', f, a)) AS result
FROM unnest(ARRAY['lock_pair', 'lock_pair_shared', 'xact_lock_pair', 'xact_lock_pair_shared'])
         WITH ORDINALITY AS fns(f, fo),
     unnest(ARRAY[$$'to-ns', 'to-a', NULL::interval$$, $$'to-ns', 'to-a', '-1s'$$,
                  $$NULL::text, 'to-a', '1s'$$, $$'to-ns', '', '1s'$$,
                  $$'to-ns', 1, NULL::interval$$, $$'to-ns', 1, '-1s'$$,
                  $$'', 1, '1s'$$, $$'to-ns', NULL::integer, '1s'$$])
         WITH ORDINALITY AS args(a, ao)
ORDER BY fo, ao;

SELECT f, a, pg_temp.try_sql(format('SELECT %s(%s)', f, a)) AS result
FROM unnest(ARRAY['lock_many', 'xact_lock_many']) WITH ORDINALITY AS fns(f, fo),
     unnest(ARRAY[$$ARRAY['to-a'], NULL::interval$$, $$ARRAY['to-a'], '-1s'$$,
                  $$NULL::text[], '1s'$$, $$ARRAY['to-a', NULL], '1s'$$,
                  $$ARRAY['to-a', ''], '1s'$$, $$'{}'::text[], NULL::interval$$,
                  $$'{}'::text[], '-1s'$$])
         WITH ORDINALITY AS args(a, ao)
ORDER BY fo, ao;
SELECT count(*) AS locks_held FROM my_locks;

-- The errors carry a HINT and are caught by their condition names.
DO $$
DECLARE
    state text; msg text; hint text;
BEGIN
    PERFORM lock_named('to-a', '-5 minutes');
EXCEPTION WHEN invalid_parameter_value THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
    RAISE NOTICE 'caught % (invalid_parameter_value): % / %', state, msg, hint;
END
$$;
DO $$
DECLARE
    state text; msg text; hint text;
BEGIN
    PERFORM xact_lock_pair('to-ns', 1, NULL);
EXCEPTION WHEN null_value_not_allowed THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
    RAISE NOTICE 'caught % (null_value_not_allowed): % / %', state, msg, hint;
END
$$;

\set VERBOSITY sqlstate
SELECT lock_named('to-a', NULL);
SELECT lock_named_shared('to-a', '-1s');
SELECT xact_lock_many(ARRAY['to-a'], '-1s');
\set VERBOSITY default

--
-- Contention. A prepared transaction holds 'to-busy' (exclusive), 'to-busy-shared'
-- (shared) and the pairs ('to-ns', 'to-busy') and ('to-ns', 5).
--
BEGIN;
SELECT xact_lock_named('to-busy'), xact_lock_named_shared('to-busy-shared'),
       xact_lock_pair('to-ns', 'to-busy'), xact_lock_pair('to-ns', 5);
PREPARE TRANSACTION 'regress_named_locks_timeouts';
SELECT count(*) AS my_locks_held FROM my_locks;
SELECT count(*) AS prepared_xact_locks FROM pg_locks
WHERE locktype = 'advisory' AND pid IS NULL AND granted;

-- Zero timeout: a try, false at once.
SELECT lock_named('to-busy', '0') AS zero, lock_named_shared('to-busy', '0') AS zero_shared,
       lock_pair('to-ns', 'to-busy', '0') AS zero_pair, lock_pair('to-ns', 5, '0') AS zero_pair_id,
       lock_many(ARRAY['to-m1', 'to-busy', 'to-m2'], '0') AS zero_many;
-- A positive timeout that passes: false, and nothing held.
SELECT lock_named('to-busy', '50ms') AS lock_named,
       lock_named_shared('to-busy', '50ms') AS lock_named_shared,
       lock_named('to-busy-shared', '50ms') AS exclusive_vs_shared,
       lock_pair('to-ns', 'to-busy', '50ms') AS lock_pair_text,
       lock_pair('to-ns', 5, '50ms') AS lock_pair_int,
       lock_pair_shared('to-ns', 'to-busy', '50ms') AS lock_pair_shared_text,
       lock_pair_shared('to-ns', 5, '50ms') AS lock_pair_shared_int,
       lock_named('to-busy', '1 microsecond') AS one_microsecond;
SELECT count(*) AS locks_held FROM my_locks;
-- shared requests on a shared hold do not conflict
SELECT lock_named_shared('to-busy-shared', '50ms') AS shared_vs_shared;
SELECT unlock_named_shared('to-busy-shared');

-- Transaction variants: false does not abort the transaction, and the transaction's
-- earlier locks stay held.
BEGIN;
SELECT xact_lock_named('to-x1');
SELECT xact_lock_named('to-busy', '50ms') AS xact_lock_named,
       xact_lock_named_shared('to-busy', '50ms') AS xact_lock_named_shared,
       xact_lock_pair('to-ns', 'to-busy', '50ms') AS xact_lock_pair_text,
       xact_lock_pair('to-ns', 5, '50ms') AS xact_lock_pair_int,
       xact_lock_pair_shared('to-ns', 'to-busy', '50ms') AS xact_lock_pair_shared_text,
       xact_lock_pair_shared('to-ns', 5, '50ms') AS xact_lock_pair_shared_int,
       xact_lock_many(ARRAY['to-m1', 'to-busy', 'to-m2'], '50ms') AS xact_lock_many;
SELECT count(*) AS locks_held, bool_and(classid = (named_lock_key('to-x1') >> 32) & 4294967295) AS only_to_x1
FROM my_locks;
SELECT 1 AS transaction_still_usable;
COMMIT;
SELECT count(*) AS locks_held FROM my_locks;

-- Inside a savepoint, and rolled back to it.
BEGIN;
SAVEPOINT s;
SELECT xact_lock_named('to-busy', '20ms');
SELECT xact_lock_named('to-x2', '20ms');
ROLLBACK TO SAVEPOINT s;
SELECT count(*) AS locks_held FROM my_locks;
SELECT xact_lock_named('to-x2', '20ms');
SELECT count(*) AS locks_held FROM my_locks;
COMMIT;

-- All or nothing: the free names of a timed-out lock_many are not left held, and a
-- name held before the call keeps exactly its earlier hold count.
SELECT lock_many(ARRAY['to-m1', 'to-m2', 'to-busy', 'to-m3', 'to-m4'], '50ms');
SELECT count(*) AS locks_held FROM my_locks;
SELECT lock_named('to-m1');
SELECT lock_many(ARRAY['to-m1', 'to-m2', 'to-busy', 'to-m3', 'to-m4'], '50ms');
SELECT count(*) AS locks_held FROM my_locks;
SELECT unlock_named('to-m1');
SELECT unlock_named('to-m1');
BEGIN;
SELECT xact_lock_named('to-m1');
SELECT xact_lock_many(ARRAY['to-m1', 'to-m2', 'to-busy', 'to-m3', 'to-m4'], '50ms');
SELECT count(*) AS locks_held FROM my_locks;
COMMIT;

-- The caller's lock_timeout is not changed, whether the call timed out or not, and the
-- per-call timeout governs the wait: a shorter session lock_timeout does not cut it
-- short (no 55P03), a longer one does not extend it.
SHOW lock_timeout;
SELECT lock_named('to-busy', '30ms'), current_setting('lock_timeout') AS lock_timeout_after;
SHOW lock_timeout;
SET lock_timeout = '10ms';
SELECT set_config('regress.t0', clock_timestamp()::text, false) IS NOT NULL AS started;
SELECT lock_named('to-busy', '300ms') AS short_session_lock_timeout;
SELECT clock_timestamp() - current_setting('regress.t0')::timestamptz >= '300ms' AS waited_the_full_timeout;
SHOW lock_timeout;
SET lock_timeout = '1h';
SELECT lock_named('to-busy', '30ms') AS long_session_lock_timeout;
SHOW lock_timeout;
-- also when set locally in a transaction
BEGIN;
SET LOCAL lock_timeout = '42s';
SELECT xact_lock_named('to-busy', '20ms'), lock_many(ARRAY['to-m1', 'to-busy'], '20ms');
SHOW lock_timeout;
COMMIT;
SHOW lock_timeout;
RESET lock_timeout;
SHOW lock_timeout;

-- The plain waiting functions still honour the session's lock_timeout (55P03) and a
-- failed plain lock_many holds nothing. (VERBOSITY terse: the primary message only.)
\set VERBOSITY terse
SET lock_timeout = '30ms';
SELECT lock_named('to-busy');
SELECT lock_many(ARRAY['to-m1', 'to-m2', 'to-busy', 'to-m3', 'to-m4']);
SELECT count(*) AS locks_held FROM my_locks;
RESET lock_timeout;

-- statement_timeout cancels a timed wait with its usual error (57014); nothing is held
-- and lock_timeout is unchanged.
SET statement_timeout = '100ms';
SELECT lock_named('to-busy', '1h');
SELECT lock_many(ARRAY['to-m1', 'to-m2', 'to-busy', 'to-m3', 'to-m4'], '1h');
SELECT lock_pair('to-ns', 5, '1h');
BEGIN;
SELECT xact_lock_many(ARRAY['to-m1', 'to-m2', 'to-busy', 'to-m3', 'to-m4'], '1h');
ROLLBACK;
RESET statement_timeout;
\set VERBOSITY default
SELECT count(*) AS locks_held FROM my_locks;
SHOW lock_timeout;

-- The same errors with their SQLSTATEs, caught in PL/pgSQL.
SET lock_timeout = '30ms';
SELECT pg_temp.try_sql($$SELECT lock_named('to-busy')$$) AS plain_lock_timeout;
RESET lock_timeout;
-- (query_canceled is not caught by WHEN OTHERS)
SET statement_timeout = '100ms';
DO $$
DECLARE
    state text; msg text;
BEGIN
    PERFORM lock_many(ARRAY['to-m1', 'to-m2', 'to-busy', 'to-m3', 'to-m4'], '1h');
EXCEPTION WHEN query_canceled THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    RAISE NOTICE 'caught % (query_canceled): % (locks held: %)', state, msg,
        (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid());
END
$$;
RESET statement_timeout;

-- In parallel mode (debug_parallel_query; force_parallel_mode before PostgreSQL 16) the
-- leader cannot open the subtransaction a timed wait needs: a free lock and a zero
-- timeout work; a timed wait on a busy lock is an error, and holds nothing.
SELECT set_config(CASE WHEN current_setting('server_version_num')::int >= 160000
                       THEN 'debug_parallel_query' ELSE 'force_parallel_mode' END,
                  'on', false) AS parallel_forced;
SELECT lock_named('to-parallel', '1s') AS free, lock_named('to-busy', '0') AS busy_zero;
SELECT lock_many(ARRAY['to-m1', 'to-busy'], '1s');
SELECT set_config(CASE WHEN current_setting('server_version_num')::int >= 160000
                       THEN 'debug_parallel_query' ELSE 'force_parallel_mode' END,
                  'off', false) AS parallel_off;
SELECT unlock_named('to-parallel');
SELECT count(*) AS locks_held FROM my_locks;

-- Once the prepared transaction is gone, the same calls succeed.
ROLLBACK PREPARED 'regress_named_locks_timeouts';
SELECT lock_named('to-busy', '50ms') AS lock_named,
       lock_pair('to-ns', 5, '50ms') AS lock_pair,
       lock_many(ARRAY['to-m1', 'to-busy', 'to-m2'], '50ms') AS lock_many;
SELECT count(*) AS locks_held FROM my_locks;
SELECT pg_advisory_unlock_all();
SELECT count(*) AS locks_held FROM my_locks;
