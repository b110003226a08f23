--
-- Hostile input for the _many family, the pair ids and the timeouts: arrays far past
-- the per-session cap, NULLs and empty names deep in large and multidimensional arrays,
-- ids at the integer limits, and intervals at the edges of their range. (many.sql,
-- pair_locks.sql and timeouts.sql have the ordinary cases.)
--
CREATE TEMP VIEW my_locks AS
SELECT classid::bigint AS classid, objid::bigint AS objid, objsubid, mode, granted
FROM pg_locks
WHERE locktype = 'advisory' AND pid = pg_backend_pid();

-- The result or the SQLSTATE of a statement, and the advisory locks held right after.
CREATE FUNCTION pg_temp.try_sql(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
BEGIN
    EXECUTE q INTO r;
    RETURN 'returned ' || coalesce(quote_literal(r), 'NULL');
EXCEPTION WHEN OTHERS THEN
    RETURN format('%s: %s (locks held: %s)', SQLSTATE, SQLERRM,
                  (SELECT count(*) FROM pg_locks
                   WHERE locktype = 'advisory' AND pid = pg_backend_pid()));
END
$$;

CREATE TEMP TABLE big AS
SELECT array_agg('hx-big-' || g ORDER BY g) AS names FROM generate_series(1, 10000) AS g;

--
-- 10,000 names with the default per-session cap (1024): 53400, all or nothing, for
-- every _many function that locks; a held lock is not lost by the failed call.
--
SHOW pg_named_locks.max_locks_per_session;
SELECT lock_named('hx-held');
SELECT f, pg_temp.try_sql(format('SELECT %s((SELECT names FROM big)%s)', f, a)) AS result
FROM (VALUES (1, 'lock_many', ''), (2, 'lock_many', $$, '1s'$$), (3, 'try_lock_many', ''),
             (4, 'xact_lock_many', ''), (5, 'xact_lock_many', $$, '1s'$$),
             (6, 'try_xact_lock_many', '')) AS t(o, f, a)
ORDER BY o;
SELECT count(*) AS locks_held FROM my_locks;
SELECT unlock_named('hx-held');

-- With the cap at exactly 10,000 it fits; at 9,999 it does not.
SET pg_named_locks.max_locks_per_session = 9999;
SELECT pg_temp.try_sql('SELECT lock_many((SELECT names FROM big))') AS cap_9999;
SET pg_named_locks.max_locks_per_session = 10000;
SELECT lock_many((SELECT names FROM big));
SELECT count(*) AS locks_held, count(DISTINCT (classid, objid)) AS distinct_keys FROM my_locks;
-- one more distinct name is refused, one already held is not (the registry may be
-- full now, all names in use: its WARNING is not what is tested here)
SET client_min_messages = error;
SELECT pg_temp.try_sql($$SELECT lock_named('hx-one-more')$$) AS one_more;
RESET client_min_messages;
SELECT try_lock_named('hx-big-5000') AS relock;
SELECT unlock_named('hx-big-5000');
SELECT unlock_many((SELECT names FROM big));
SELECT count(*) AS locks_held FROM my_locks;
-- unlocking again releases nothing (one WARNING per name not held, silenced here)
SET client_min_messages = error;
SELECT unlock_many((SELECT names FROM big)) AS released_again;
RESET client_min_messages;
RESET pg_named_locks.max_locks_per_session;

--
-- A NULL or empty element anywhere in a large array: the error, and nothing taken,
-- because every element is checked before the first lock is requested.
--
SET pg_named_locks.max_locks_per_session = 0;
SELECT pos, bad, pg_temp.try_sql(format('SELECT lock_many(%L::text[])',
                                        (SELECT names[:pos - 1] || bad::text || names[pos + 1:] FROM big)))
FROM (VALUES (1), (5000), (10000)) AS p(pos), (VALUES (NULL), ('')) AS b(bad)
ORDER BY pos, bad NULLS FIRST;
-- the first bad element in array order decides the error
SELECT pg_temp.try_sql($$SELECT lock_many(ARRAY['hx-a', '', 'hx-b', NULL])$$) AS empty_first,
       pg_temp.try_sql($$SELECT lock_many(ARRAY['hx-a', NULL, 'hx-b', ''])$$) AS null_first;
-- unlock_many with a bad element releases nothing
SELECT lock_many(ARRAY['hx-a', 'hx-b']);
SELECT pg_temp.try_sql($$SELECT unlock_many(ARRAY['hx-a', 'hx-b', NULL])$$) AS unlock_with_null;
SELECT count(*) AS still_held FROM my_locks;
SELECT unlock_many(ARRAY['hx-a', 'hx-b']);
RESET pg_named_locks.max_locks_per_session;

--
-- Multidimensional arrays are read flat, in storage order (as unnest does): duplicates
-- across rows fold, a NULL or empty element anywhere is an error. (An empty array has
-- no dimensions in PostgreSQL, however it is written: a no-op.)
--
SELECT lock_many('{{{hx-a,hx-b},{hx-a,hx-c}},{{hx-c,hx-b},{hx-d,hx-a}}}'::text[]);
SELECT count(*) AS locks_held FROM my_locks;
SELECT unlock_many('{{hx-a},{hx-b},{hx-c},{hx-d}}'::text[]) AS released;
SELECT count(*) AS locks_held FROM my_locks;
SELECT pg_temp.try_sql($$SELECT lock_many('{{{hx-a,hx-b}},{{hx-c,NULL}}}'::text[])$$) AS null_in_3d,
       pg_temp.try_sql($$SELECT try_lock_many('{{hx-a,hx-b},{"",hx-c}}'::text[])$$) AS empty_in_2d;
SELECT try_lock_many(ARRAY[]::text[][]) AS empty, lock_many(array_fill('x'::text, ARRAY[0, 0])),
       unlock_many(array_fill('x'::text, ARRAY[0])) AS released;
SELECT count(*) AS locks_held FROM my_locks;
-- a slice and arbitrary lower bounds lock the same names
SELECT lock_many(('[-3:0]={hx-a,hx-b,hx-c,hx-d}'::text[])[-2:-1]);
SELECT count(*) AS locks_held FROM my_locks;
SELECT unlock_many(ARRAY['hx-b', 'hx-c']) AS released;
-- names that only look alike are different locks (no normalisation, no trimming)
SELECT lock_many(ARRAY['hx-é', E'hx-e\u0301', 'HX-É', 'hx-é ', E'hx-\u00e9']);
SELECT count(*) AS locks_held FROM my_locks;
SELECT unlock_many(ARRAY['hx-é', E'hx-e\u0301', 'HX-É', 'hx-é ']) AS released;

--
-- Pair ids at the integer limits map to pg_locks.objid (the id's unsigned 32-bit
-- reading), classid = key32 of the namespace, objsubid 2, and the view's key2 is the
-- id itself, for every kind of pair function.
--
CREATE TEMP TABLE ids AS
SELECT id FROM unnest(ARRAY[-2147483648, -1, 0, 1, 2147483647]) AS id;
SELECT lock_pair('hx-ns', id) FROM ids;
SELECT lock_pair_shared('hx-ns', id, '1s') FROM ids;
BEGIN;
SELECT xact_lock_pair('hx-ns2', id), try_xact_lock_pair_shared('hx-ns2', id) FROM ids;
SELECT i.id, l.classid = named_lock_key32('hx-ns')::bigint & 4294967295 AS classid_ok,
       l.objid, l.objsubid, l.mode
FROM ids i JOIN my_locks l ON l.objid = i.id::bigint & 4294967295
                          AND l.classid = named_lock_key32('hx-ns')::bigint & 4294967295
ORDER BY i.id, l.mode;
SELECT v.key2, v.lock_name, v.mode
FROM advisory_locks_v v
WHERE v.pid = pg_backend_pid() AND v.key1 = named_lock_key32('hx-ns2')
ORDER BY v.key2, v.mode;
SELECT count(*) = 5 AS names_ok
FROM ids WHERE named_lock_name(named_lock_key32('hx-ns'), id) = 'hx-ns:' || id;
COMMIT;
SELECT unlock_pair('hx-ns', id), unlock_pair_shared('hx-ns', id) FROM ids;
SELECT count(*) AS locks_held FROM my_locks;
-- the same locks as the built-in two-int4 functions at the limits
SELECT pg_advisory_lock(named_lock_key32('hx-ns'), -2147483648);
SELECT unlock_pair('hx-ns', -2147483648) AS unlocked_builtin_hold;
-- out of range is the integer cast's error, before any call; and there is no bigint
-- overload to narrow into silently
SELECT lock_pair('hx-ns', 2147483648::integer);
SELECT lock_pair('hx-ns', ((-2147483648)::bigint - 1)::integer);
SELECT lock_pair('hx-ns', 2147483648);
SELECT count(*) AS locks_held FROM my_locks;

--
-- Timeouts at the edges. A prepared transaction holds 'hx-busy' and ('hx-ns', 7), so
-- a wait for them can only end by the timeout or statement_timeout.
--
BEGIN;
SELECT xact_lock_named('hx-busy'), xact_lock_pair('hx-ns', 7);
PREPARE TRANSACTION 'regress_named_locks_hostile';

-- Free lock: a huge timeout is accepted and the lock taken; a huge negative one is
-- 22023, not an overflow into a positive or zero wait.
SELECT iv, pg_temp.try_sql(format('SELECT lock_named(%L, %L::interval)', 'hx-free', iv)) AS result
FROM unnest(ARRAY['1000 years', '178000000 years',
                  '2147483646 mons 2147483646 days 9223372036854775806 microseconds',
                  '2147483647 mons -2147483648 days',
                  '-178000000 years', '-2147483648 mons',
                  '-2147483648 mons -2147483648 days -9223372036854775807 microseconds',
                  '-2147483648 mons 2147483647 days 9223372036854775807 microseconds',
                  '1 mon -30 days', '1 mon -30 days -1 microsecond', '0.4 microseconds',
                  '0.6 microseconds', '-0.4 microseconds'])
         WITH ORDINALITY AS t(iv, o)
ORDER BY o;
-- one hold per call that returned (true), none for the errors
SELECT count(*) AS rows_for_hx_free FROM my_locks;
SET client_min_messages = error;
SELECT sum(unlock_named('hx-free')::int) AS holds FROM generate_series(1, 20);
RESET client_min_messages;
SELECT count(*) AS locks_held FROM my_locks;

-- Busy lock: a huge timeout really waits (statement_timeout ends it with 57014, after
-- which nothing is held); a zero total, or one rounded to zero, is a try (false at
-- once); one microsecond times out (false).
SET statement_timeout = '200ms';
-- (query_canceled is not caught by WHEN OTHERS; catch it by name. One statement per
-- call: statement_timeout fires once per statement.)
CREATE FUNCTION pg_temp.try_canceled(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
BEGIN
    EXECUTE q INTO r;
    RETURN 'returned ' || coalesce(quote_literal(r), 'NULL');
EXCEPTION WHEN query_canceled THEN
    RETURN format('%s: %s (locks held: %s)', SQLSTATE, SQLERRM,
                  (SELECT count(*) FROM pg_locks
                   WHERE locktype = 'advisory' AND pid = pg_backend_pid()));
END
$$;
SELECT pg_temp.try_canceled($q$SELECT lock_named('hx-busy', '1000 years')$q$);
SELECT pg_temp.try_canceled($q$SELECT lock_named('hx-busy',
           '2147483646 mons 2147483646 days 9223372036854775806 microseconds')$q$);
SELECT pg_temp.try_canceled($q$SELECT lock_named('hx-busy', '2147483647 mons -2147483648 days')$q$);
SELECT pg_temp.try_canceled($q$SELECT lock_many(ARRAY['hx-m1', 'hx-busy', 'hx-m2'],
           '2147483646 mons 2147483646 days 9223372036854775806 microseconds')$q$);
SELECT pg_temp.try_canceled($q$SELECT xact_lock_pair('hx-ns', 7, '1000 years')$q$);
RESET statement_timeout;
SELECT lock_named('hx-busy', '1 mon -30 days') AS zero_total,
       lock_named('hx-busy', '0.4 microseconds') AS rounded_to_zero,
       lock_named('hx-busy', '0.6 microseconds') AS one_microsecond,
       lock_pair('hx-ns', 7, '1 microsecond') AS pair_one_microsecond,
       lock_many(ARRAY['hx-m1', 'hx-busy'], '1 microsecond') AS many_one_microsecond;
SELECT count(*) AS locks_held FROM my_locks;

ROLLBACK PREPARED 'regress_named_locks_hostile';
SELECT pg_advisory_unlock_all();
SELECT count(*) AS locks_held FROM my_locks;
