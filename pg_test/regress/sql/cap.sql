--
-- The per-session cap pg_named_locks.max_locks_per_session (README "Per-session cap"):
-- the distinct named locks one session may hold, default 1024, 0 = no cap, settable
-- by superusers only. Past it a named lock call fails with 53400 and a HINT before it
-- requests the lock; re-locking a lock already held is allowed at the cap; transaction
-- locks count until their transaction ends.
--
CREATE TEMP VIEW my_locks AS
SELECT classid::bigint AS classid, objid::bigint AS objid, objsubid, mode, granted
FROM pg_locks
WHERE locktype = 'advisory' AND pid = pg_backend_pid();

-- Distinct advisory locks held (pg_locks has one row per mode).
CREATE TEMP VIEW my_lock_count AS
SELECT count(DISTINCT (classid, objid, objsubid)) AS locks_held FROM my_locks;

CREATE FUNCTION pg_temp.try_sql(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN format('%s: %s (locks held: %s)', SQLSTATE, SQLERRM,
                  (SELECT locks_held FROM my_lock_count));
END
$$;

-- The settings.
SELECT name, setting, context, vartype, min_val, max_val, boot_val
FROM pg_settings WHERE name IN ('pg_named_locks.max_locks_per_session', 'pg_named_locks.track_stats')
ORDER BY name;
SHOW pg_named_locks.max_locks_per_session;
SET pg_named_locks.max_locks_per_session = -1;

--
-- Cap 3.
--
SET pg_named_locks.max_locks_per_session = 3;
SELECT lock_named('cap-1'), lock_named_shared('cap-2'), lock_pair('cap-ns', 3);
SELECT * FROM my_lock_count;
-- a fourth lock: refused before it is requested
SELECT lock_named('cap-4');
SELECT * FROM my_lock_count;
-- every kind of lock function is refused, try and timeout variants included (an error,
-- not false)
SELECT f, a, pg_temp.try_sql(format('SELECT %s(%s)', f, a)) AS result
FROM (VALUES (1, 'lock_named', $$'cap-4'$$), (2, 'try_lock_named', $$'cap-4'$$),
             (3, 'lock_named_shared', $$'cap-4', '1s'$$), (4, 'lock_named', $$'cap-4', '0'$$),
             (5, 'xact_lock_named', $$'cap-4'$$), (6, 'try_xact_lock_named_shared', $$'cap-4'$$),
             (7, 'lock_pair', $$'cap-ns', 4$$), (8, 'try_lock_pair', $$'cap-ns', 'cap-4'$$),
             (9, 'xact_lock_pair_shared', $$'cap-ns', 4, '1s'$$),
             (10, 'lock_many', $$ARRAY['cap-4']$$), (11, 'try_lock_many', $$ARRAY['cap-4']$$),
             (12, 'lock_many', $$ARRAY['cap-4'], '1s'$$),
             (13, 'xact_lock_many', $$ARRAY['cap-4']$$),
             (14, 'try_xact_lock_many', $$ARRAY['cap-4']$$),
             (15, 'register_lock_name', $$'cap-4'$$)) AS t(o, f, a)
ORDER BY o;
-- (register_lock_name takes no lock: not capped)

-- Re-locking what is held is allowed at the cap, in either mode, and so is an empty
-- _many call. ('cap-1' ends up with five exclusive holds and one shared hold, 'cap-2'
-- and ('cap-ns', 3) with two holds each: still 3 distinct locks.)
SELECT lock_named('cap-1'), try_lock_named('cap-1'), lock_named('cap-1', '1s'),
       lock_named_shared('cap-1'), lock_named('cap-2'), lock_pair('cap-ns', 3),
       lock_many(ARRAY['cap-1', 'cap-2']), try_lock_many('{}');
BEGIN;
SELECT xact_lock_named('cap-1'), xact_lock_pair_shared('cap-ns', 3), xact_lock_many(ARRAY['cap-2']);
COMMIT;
SELECT * FROM my_lock_count;
SELECT count(*) AS pg_locks_rows FROM my_locks;

-- Releasing holds makes room only when a lock is released completely: after these
-- unlocks 'cap-2' (exclusive) and ('cap-ns', 3) are still held.
SELECT unlock_named('cap-1'), unlock_named('cap-1'), unlock_named('cap-1'), unlock_named('cap-1'),
       unlock_named('cap-1'), unlock_named_shared('cap-1'), unlock_named('cap-2'),
       unlock_pair('cap-ns', 3), unlock_named('cap-1');
SELECT * FROM my_lock_count;
SELECT unlock_named_shared('cap-2');
SELECT * FROM my_lock_count;
-- room for exactly one more
SELECT lock_named('cap-4');
SELECT lock_named('cap-5');
SELECT * FROM my_lock_count;

-- SQLSTATE 53400 (configuration_limit_exceeded), with the message and HINT.
\set VERBOSITY sqlstate
SELECT lock_named('cap-5');
\set VERBOSITY default
DO $$
DECLARE
    state text; msg text; hint text;
BEGIN
    PERFORM lock_many(ARRAY['cap-5', 'cap-6']);
EXCEPTION WHEN configuration_limit_exceeded THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
    RAISE NOTICE 'caught % (configuration_limit_exceeded): % / %', state, msg, hint;
END
$$;
SELECT * FROM my_lock_count;

-- lock_many beyond the cap leaves nothing new held, and a name held before keeps its
-- hold count: 'cap-1' (held) and three new names, with room for one.
SELECT pg_advisory_unlock_all();
SELECT lock_named('cap-1'), lock_named('cap-2');
SELECT * FROM my_lock_count;
SELECT lock_many(ARRAY['cap-1', 'cap-a', 'cap-b', 'cap-c']);
SELECT * FROM my_lock_count;
SELECT lock_many(ARRAY['cap-1', 'cap-a', 'cap-b', 'cap-c'], '1s');
SELECT try_lock_many(ARRAY['cap-1', 'cap-a', 'cap-b', 'cap-c']);
SELECT * FROM my_lock_count;
SELECT unlock_named('cap-1');
SELECT unlock_named('cap-1');
BEGIN;
SELECT xact_lock_many(ARRAY['cap-1', 'cap-a', 'cap-b', 'cap-c']);
ROLLBACK;
SELECT * FROM my_lock_count;
-- exactly up to the cap is fine
SELECT lock_many(ARRAY['cap-a', 'cap-b']);
SELECT * FROM my_lock_count;
SELECT pg_advisory_unlock_all();

--
-- Transaction locks count until their transaction ends.
--
SELECT lock_named('cap-1'), lock_named('cap-2');
BEGIN;
SELECT xact_lock_named('cap-x1');
SELECT * FROM my_lock_count;
SELECT try_xact_lock_named('cap-x2');
ROLLBACK;
BEGIN;
SELECT xact_lock_named('cap-x1');
SELECT lock_named('cap-3');
ROLLBACK;
SELECT * FROM my_lock_count;
-- after COMMIT the transaction lock no longer counts
BEGIN;
SELECT xact_lock_named('cap-x1');
COMMIT;
SELECT lock_named('cap-3');
SELECT * FROM my_lock_count;
-- a transaction lock taken outside a transaction block is gone after the statement
SELECT pg_advisory_unlock_all();
SELECT lock_named('cap-1'), lock_named('cap-2');
SELECT xact_lock_named('cap-x1'), xact_lock_named('cap-x1');
SELECT xact_lock_named('cap-x2');
SELECT lock_named('cap-3');
SELECT * FROM my_lock_count;
SELECT pg_advisory_unlock_all();

--
-- Only superusers may set it. The cap a superuser set applies to the session whatever
-- its current role.
--
CREATE ROLE regress_named_locks_cap_user;
SET ROLE regress_named_locks_cap_user;
SET pg_named_locks.max_locks_per_session = 100;
\set VERBOSITY sqlstate
SET pg_named_locks.max_locks_per_session = 0;
RESET pg_named_locks.max_locks_per_session;
\set VERBOSITY default
SHOW pg_named_locks.max_locks_per_session;
SELECT lock_many(ARRAY['cap-r1', 'cap-r2', 'cap-r3']);
SELECT lock_named('cap-r4');
SELECT unlock_many(ARRAY['cap-r1', 'cap-r2', 'cap-r3']);
RESET ROLE;
DROP ROLE regress_named_locks_cap_user;

--
-- 0 = no cap.
--
SET pg_named_locks.max_locks_per_session = 0;
SELECT lock_many(array_agg('cap-many-' || g)) FROM generate_series(1, 1500) AS g;
SELECT * FROM my_lock_count;
SELECT unlock_many(array_agg('cap-many-' || g)) FROM generate_series(1, 1500) AS g;

--
-- The default, 1024.
--
RESET pg_named_locks.max_locks_per_session;
SHOW pg_named_locks.max_locks_per_session;
SELECT lock_many(array_agg('cap-many-' || g)) FROM generate_series(1, 1025) AS g;
SELECT * FROM my_lock_count;
SELECT lock_many(array_agg('cap-many-' || g)) FROM generate_series(1, 1024) AS g;
SELECT * FROM my_lock_count;
SELECT lock_named('cap-many-1025');
SELECT lock_named('cap-many-1024');
SELECT unlock_many(array_agg('cap-many-' || g)) FROM generate_series(1, 1024) AS g;
SELECT unlock_named('cap-many-1024');
SELECT * FROM my_lock_count;
-- and the same with transaction locks
BEGIN;
SELECT xact_lock_many(array_agg('cap-many-' || g)) FROM generate_series(1, 1024) AS g;
SELECT try_xact_lock_named('cap-many-1025');
ROLLBACK;
SELECT * FROM my_lock_count;

--
-- The cap counts distinct advisory locks of any origin, whatever happened earlier in the
-- session. Each case starts in a fresh session (\c).
--
-- Many holds of one lock, released by unlock_named, do not make room beyond the cap.
\c
SET pg_named_locks.max_locks_per_session = 3;
SELECT lock_named('cap-r-a'), lock_named('cap-r-a'), lock_named('cap-r-a');
SELECT lock_named('cap-r-b'), lock_named('cap-r-c');
SELECT unlock_named('cap-r-a'), unlock_named('cap-r-a'), unlock_named('cap-r-a');
SELECT lock_named('cap-r-d');
SELECT lock_named('cap-r-e');
SELECT count(*) AS locks_held FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
SELECT pg_advisory_unlock_all();
-- Locks taken with the built-in functions do not count: the cap is on named locks.
\c
SET pg_named_locks.max_locks_per_session = 3;
SELECT pg_advisory_lock(1), pg_advisory_lock(2), pg_advisory_lock(3, 4);
SELECT lock_named('cap-after-builtins');
SELECT try_lock_many(ARRAY['cap-after-builtins']);
SELECT pg_advisory_unlock(1);
SELECT lock_named('cap-after-builtins');
SELECT count(*) AS locks_held FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
SELECT pg_advisory_unlock_all();
