--
-- Argument errors (DESIGN.md section 4). A lock function never silently skips locking:
-- a NULL name, namespace or id is ERROR 22004 (where the built-ins, being STRICT, would
-- return NULL without locking) and an empty name or namespace is ERROR 22023.
-- After every error, no lock is held.
--
CREATE TEMP VIEW my_locks AS
SELECT classid::bigint AS classid, objid::bigint AS objid, objsubid, mode, granted
FROM pg_locks
WHERE locktype = 'advisory' AND pid = pg_backend_pid();

-- The errors as a client sees them.
SELECT lock_named(NULL);
SELECT count(*) AS locks_held FROM my_locks;
SELECT lock_named('');
SELECT count(*) AS locks_held FROM my_locks;
SELECT try_lock_named(NULL);
SELECT unlock_named(NULL);
SELECT unlock_named('');
SELECT xact_lock_named(NULL);
SELECT lock_pair(NULL, 'name');
SELECT lock_pair('', 'name');
SELECT lock_pair('ns', NULL::text);
SELECT lock_pair('ns', '');
SELECT lock_pair('ns', NULL::integer);
SELECT lock_pair(NULL, 1);
SELECT lock_pair('', 1);
-- an untyped NULL second argument resolves to the (text, text) overload
SELECT lock_pair('ns', NULL);
-- both arguments bad: the namespace is checked first
SELECT lock_pair(NULL, NULL::text);
SELECT lock_pair('', '');
SELECT count(*) AS locks_held FROM my_locks;

-- Key functions: NULL is an error (pg_advisory_lock(named_lock_key(NULL)) must not
-- silently lock nothing); the empty string is a valid text with a key.
SELECT named_lock_key(NULL);
SELECT named_lock_key32(NULL);
SELECT named_lock_key('') IS NOT NULL AS empty_has_key, named_lock_key32('') IS NOT NULL AS empty_has_key32;

-- Compare: the built-ins are STRICT and return NULL without locking.
SELECT pg_advisory_lock(NULL) IS NULL AS builtin_returns_null;

-- A failed call inside a transaction block aborts the transaction like any error.
BEGIN;
SELECT xact_lock_named('before-error');
SELECT xact_lock_named('');
SELECT 1;
ROLLBACK;
SELECT count(*) AS locks_held FROM my_locks;

-- The error is raised even when the function is not the top of the expression.
SELECT coalesce(try_lock_named(NULL), false);
SELECT count(*) AS locks_held FROM my_locks;
SELECT try_lock_named(n) FROM (VALUES ('ok-1'), (NULL), ('ok-2')) AS v(n);
-- (the row before the error was locked, as with any volatile function; release it)
SELECT count(*) AS locks_held FROM my_locks;
SELECT pg_advisory_unlock_all();

-- SQLSTATE of every lock function for every bad argument, and how many advisory locks
-- this session holds right after the failed call (session locks would survive the
-- subtransaction rollback of the exception block, so a leaked lock would show here).
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

SELECT f, a, pg_temp.try_sql(format('SELECT %s(%s)', f, a)) AS result
FROM unnest(ARRAY['lock_named', 'lock_named_shared', 'try_lock_named',
                  'try_lock_named_shared', 'unlock_named', 'unlock_named_shared',
                  'xact_lock_named', 'xact_lock_named_shared', 'try_xact_lock_named',
                  'try_xact_lock_named_shared', 'named_lock_key', 'named_lock_key32'])
         WITH ORDINALITY AS fns(f, fo),
     unnest(ARRAY['NULL::text', $$''$$]) WITH ORDINALITY AS args(a, ao)
ORDER BY fo, ao;

SELECT f, a, pg_temp.try_sql(format('SELECT %s(%s)', f, a)) AS result
FROM unnest(ARRAY['lock_pair', 'lock_pair_shared', 'try_lock_pair', 'try_lock_pair_shared',
                  'unlock_pair', 'unlock_pair_shared', 'xact_lock_pair',
                  'xact_lock_pair_shared', 'try_xact_lock_pair', 'try_xact_lock_pair_shared'])
         WITH ORDINALITY AS fns(f, fo),
     unnest(ARRAY[$$NULL::text, 'name'$$, $$'', 'name'$$, $$'ns', NULL::text$$, $$'ns', ''$$,
                  $$NULL::text, 1$$, $$'', 1$$, $$'ns', NULL::integer$$])
         WITH ORDINALITY AS args(a, ao)
ORDER BY fo, ao;

SELECT count(*) AS locks_held FROM my_locks;

-- The errors carry a HINT; the condition names catch them.
DO $$
DECLARE
    state text; msg text; hint text;
BEGIN
    PERFORM lock_named(NULL);
EXCEPTION WHEN null_value_not_allowed THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
    RAISE NOTICE 'caught % (null_value_not_allowed): % / %', state, msg, hint;
END
$$;
DO $$
DECLARE
    state text; msg text; hint text;
BEGIN
    PERFORM lock_pair('', 1);
EXCEPTION WHEN invalid_parameter_value THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
    RAISE NOTICE 'caught % (invalid_parameter_value): % / %', state, msg, hint;
END
$$;

-- \set VERBOSITY sqlstate prints just the SQLSTATE of an error.
\set VERBOSITY sqlstate
SELECT lock_named(NULL);
SELECT lock_named('');
SELECT lock_pair('account', NULL::integer);
SELECT named_lock_key(NULL);
\set VERBOSITY default

SELECT count(*) AS locks_held FROM my_locks;
