--
-- Many locks at once (DESIGN.md section 3, README "Many locks at once"), in one
-- session: lock_many(text[]), try_lock_many(text[]) -> boolean, unlock_many(text[]) ->
-- integer, xact_lock_many(text[]), try_xact_lock_many(text[]) -> boolean. Locks are
-- taken in ascending key order with duplicates folded, all or nothing. A NULL array or
-- element is ERROR 22004, an empty element ERROR 22023, an empty array a no-op.
-- (The timeout overloads are in timeouts.sql; contention across sessions in the
-- isolation specs many.spec and stats_contention.spec.)
--
CREATE TEMP VIEW my_locks AS
SELECT classid::bigint AS classid, objid::bigint AS objid, objsubid, mode, granted
FROM pg_locks
WHERE locktype = 'advisory' AND pid = pg_backend_pid();

-- The names of the bigint-space locks this session holds, among the given candidates.
CREATE FUNCTION pg_temp.held(names text[]) RETURNS text[] LANGUAGE sql AS $$
    SELECT coalesce(array_agg(n ORDER BY n), '{}')
    FROM unnest(names) AS n
    WHERE EXISTS (SELECT FROM my_locks
                  WHERE classid = (named_lock_key(n) >> 32) & 4294967295
                    AND objid = named_lock_key(n) & 4294967295 AND objsubid = 1)
$$;

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

--
-- Argument errors: every element is checked before anything is locked.
--
SELECT lock_many(NULL);
SELECT lock_many(ARRAY['m-a', NULL, 'm-b']);
SELECT lock_many(ARRAY['m-a', '', 'm-b']);
SELECT lock_many('{m-a,NULL}');
SELECT count(*) AS locks_held FROM my_locks;

SELECT f, a, pg_temp.try_sql(format('SELECT %s(%s)', f, a)) AS result
FROM unnest(ARRAY['lock_many', 'try_lock_many', 'unlock_many', 'xact_lock_many',
                  'try_xact_lock_many'])
         WITH ORDINALITY AS fns(f, fo),
     unnest(ARRAY['NULL::text[]', $$ARRAY[NULL]::text[]$$, $$ARRAY['m-a', NULL]$$,
                  $$ARRAY[NULL, 'm-a']$$, $$ARRAY['m-a', '']$$, $$ARRAY['', NULL]$$])
         WITH ORDINALITY AS args(a, ao)
ORDER BY fo, ao;
SELECT count(*) AS locks_held FROM my_locks;

\set VERBOSITY sqlstate
SELECT try_lock_many(NULL);
SELECT xact_lock_many(ARRAY['m-a', NULL]);
SELECT unlock_many(ARRAY['']);
\set VERBOSITY default

-- An empty array is a no-op: nothing locked, try and timeout variants return true,
-- unlock_many releases 0.
SELECT lock_many('{}'), try_lock_many('{}'), lock_many('{}', '1s') AS lock_many_timeout,
       unlock_many('{}'), xact_lock_many('{}'), try_xact_lock_many('{}'),
       xact_lock_many('{}', '0') AS xact_lock_many_timeout;
SELECT lock_many(ARRAY[]::text[]), try_lock_many(ARRAY[]::text[]);
SELECT count(*) AS locks_held FROM my_locks;

--
-- lock_many: exclusive session locks, the same tags as lock_named, one per name.
--
SELECT lock_many(ARRAY['m-a', 'm-b', 'm-c']);
SELECT count(*) AS locks_held, bool_and(mode = 'ExclusiveLock' AND granted AND objsubid = 1) AS exclusive_bigint
FROM my_locks;
SELECT pg_temp.held(ARRAY['m-a', 'm-b', 'm-c', 'm-d']);
-- released by the single-name and built-in unlocks as well
SELECT unlock_named('m-a'), pg_advisory_unlock(named_lock_key('m-b'));
SELECT unlock_many(ARRAY['m-c']);
SELECT count(*) AS locks_held FROM my_locks;

-- Duplicates are folded: one hold per distinct name.
SELECT lock_many(ARRAY['m-a', 'm-b', 'm-a', 'm-a', 'm-b']);
SELECT count(*) AS locks_held FROM my_locks;
SELECT unlock_named('m-a'), unlock_named('m-b');
SELECT unlock_named('m-a');
SELECT count(*) AS locks_held FROM my_locks;
-- names are not normalised: case and spaces count
SELECT lock_many(ARRAY['m-a', 'M-A', 'm-a ', ' m-a']);
SELECT count(*) AS locks_held FROM my_locks;
SELECT unlock_many(ARRAY['m-a', 'M-A', 'm-a ', ' m-a']);

-- Re-entrant: a name already held gets one more hold (two unlocks needed).
SELECT lock_named('m-a');
SELECT lock_many(ARRAY['m-a', 'm-b']);
SELECT count(*) AS locks_held FROM my_locks;
SELECT unlock_many(ARRAY['m-a', 'm-b']);
SELECT pg_temp.held(ARRAY['m-a', 'm-b']);
SELECT unlock_many(ARRAY['m-a', 'm-a']);
SELECT count(*) AS locks_held FROM my_locks;

-- Interop with the built-ins: a lock taken by key is the same lock.
SELECT pg_advisory_lock(named_lock_key('m-b'));
SELECT lock_many(ARRAY['m-a', 'm-b']);
SELECT count(*) AS locks_held FROM my_locks;
SELECT unlock_many(ARRAY['m-a', 'm-b']);
SELECT pg_advisory_unlock(named_lock_key('m-b'));
SELECT count(*) AS locks_held FROM my_locks;

-- A multidimensional array locks all its elements; array bounds do not matter.
SELECT lock_many('{{m-a,m-b},{m-c,m-d}}'::text[]);
SELECT pg_temp.held(ARRAY['m-a', 'm-b', 'm-c', 'm-d']);
SELECT unlock_many('[5:8]={m-a,m-b,m-c,m-d}'::text[]);
SELECT count(*) AS locks_held FROM my_locks;

--
-- try_lock_many: true when all are held (nothing else can make it fail in one session).
--
SELECT try_lock_many(ARRAY['m-a', 'm-b', 'm-a']);
SELECT pg_temp.held(ARRAY['m-a', 'm-b', 'm-c']);
SELECT try_lock_many(ARRAY['m-b', 'm-c']);
SELECT unlock_named('m-b'), unlock_named('m-b');
SELECT unlock_many(ARRAY['m-a', 'm-c']);
SELECT count(*) AS locks_held FROM my_locks;

--
-- unlock_many: releases one exclusive session hold per distinct name and returns how
-- many it released; a name not held gets the lock manager's WARNING and is not counted.
--
SELECT lock_many(ARRAY['m-a', 'm-b']);
SELECT unlock_many(ARRAY['m-a', 'm-never', 'm-b', 'm-a']);
SELECT unlock_many(ARRAY['m-a', 'm-b']);
-- a shared hold is not an exclusive hold, and a transaction lock is not a session lock
SELECT lock_named_shared('m-shared');
SELECT unlock_many(ARRAY['m-shared']);
SELECT unlock_named_shared('m-shared');
BEGIN;
SELECT xact_lock_many(ARRAY['m-xact']);
SELECT unlock_many(ARRAY['m-xact']);
SELECT count(*) AS locks_held FROM my_locks;
COMMIT;
SELECT count(*) AS locks_held FROM my_locks;

--
-- xact_lock_many / try_xact_lock_many: transaction locks, released at COMMIT or
-- ROLLBACK, not by unlock.
--
BEGIN;
SELECT xact_lock_many(ARRAY['m-x1', 'm-x2', 'm-x1']);
SELECT try_xact_lock_many(ARRAY['m-x3', 'm-x2']);
SELECT count(*) AS locks_held, bool_and(mode = 'ExclusiveLock' AND objsubid = 1) AS exclusive_bigint
FROM my_locks;
SELECT pg_temp.held(ARRAY['m-x1', 'm-x2', 'm-x3']);
COMMIT;
SELECT count(*) AS locks_after_commit FROM my_locks;
BEGIN;
SELECT xact_lock_many(ARRAY['m-x1', 'm-x2']);
SELECT count(*) AS locks_held FROM my_locks;
ROLLBACK;
SELECT count(*) AS locks_after_rollback FROM my_locks;
-- outside a transaction block, released when the statement ends
SELECT xact_lock_many(ARRAY['m-x1', 'm-x2']), try_xact_lock_many(ARRAY['m-x3']);
SELECT count(*) AS locks_held FROM my_locks;
-- an error in the array aborts the transaction like any error
BEGIN;
SELECT xact_lock_many(ARRAY['m-x1']);
SELECT xact_lock_many(ARRAY['m-x2', NULL]);
SELECT 1;
ROLLBACK;
SELECT count(*) AS locks_held FROM my_locks;

-- Session and transaction locks on the same names.
BEGIN;
SELECT lock_many(ARRAY['m-a', 'm-b']);
SELECT xact_lock_many(ARRAY['m-a', 'm-b']);
SELECT count(*) AS locks_held FROM my_locks;
COMMIT;
SELECT pg_temp.held(ARRAY['m-a', 'm-b']);
SELECT unlock_many(ARRAY['m-a', 'm-b']);
SELECT count(*) AS locks_held FROM my_locks;

-- The names of a _many call are remembered: the view shows them by name.
SELECT lock_many(ARRAY['m-view-1', 'm-view-2']);
SELECT lock_name, key_kind, mode, granted FROM advisory_locks_v
WHERE pid = pg_backend_pid() ORDER BY lock_name;
SELECT unlock_many(ARRAY['m-view-1', 'm-view-2']);

--
-- 10,000 names in one call (the per-session cap, 1024 by default, is lifted here; see
-- cap.sql).
--
SET pg_named_locks.max_locks_per_session = 0;
SELECT lock_many(array_agg('m-big-' || g)) FROM generate_series(1, 10000) AS g;
SELECT count(*) AS locks_held, count(DISTINCT (classid, objid)) AS distinct_keys FROM my_locks;
SELECT count(*) AS names_held
FROM generate_series(1, 10000) AS g
WHERE named_lock_key('m-big-' || g) IN (SELECT (classid << 32) | objid FROM my_locks);
SELECT unlock_many(array_agg('m-big-' || g)) FROM generate_series(1, 10000) AS g;
SELECT count(*) AS locks_held FROM my_locks;
-- 10,000 elements, 100 distinct names
SELECT try_lock_many(array_agg('m-dup-' || g % 100)) FROM generate_series(1, 10000) AS g;
SELECT count(*) AS locks_held FROM my_locks;
SELECT unlock_many(array_agg('m-dup-' || g % 100)) FROM generate_series(1, 10000) AS g;
-- the timeout overload and the transaction variants
SELECT lock_many(array_agg('m-big-' || g), '10s') FROM generate_series(1, 10000) AS g;
SELECT count(*) AS locks_held FROM my_locks;
SELECT unlock_many(array_agg('m-big-' || g ORDER BY g DESC)) FROM generate_series(1, 10000) AS g;
BEGIN;
SELECT xact_lock_many(array_agg('m-big-' || g)) FROM generate_series(1, 10000) AS g;
-- again, in reverse order: re-entrant, still 10,000 locks
SELECT try_xact_lock_many(array_agg('m-big-' || g ORDER BY g DESC)) FROM generate_series(1, 10000) AS g;
SELECT count(*) AS locks_held FROM my_locks;
COMMIT;
SELECT count(*) AS locks_held FROM my_locks;
RESET pg_named_locks.max_locks_per_session;
