--
-- Liveness (0.3.0), one session: "do I hold it?" (named_lock_held,
-- named_lock_held_shared, named_lock_hold_count), leased locks (lock_named_lease,
-- named_lock_renew) and what the monitoring shows of them (advisory_locks_v's
-- idle_for, queue_position and lease_expires_at columns, named_lock_idle_holders).
-- Queue positions, idle holders and leases seen from another session are in
-- isolation/specs/queue_position.spec; a session ended by its expired lease is in the
-- pytest fault suite (pg_regress cannot survive its own session ending). Every lease
-- here is long (an hour): this session is idle between statements, and a short lease
-- that ran out would end it.
--
\set VERBOSITY terse
CREATE TEMP VIEW held AS
SELECT n.name, named_lock_held(n.name) AS held, named_lock_held_shared(n.name) AS held_shared,
       named_lock_hold_count(n.name) AS hold_count
FROM (VALUES ('lv-a'), ('lv-b')) AS n(name);
CREATE TEMP VIEW my_locks AS
SELECT count(*) AS locks FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();

--
-- named_lock_held / named_lock_held_shared / named_lock_hold_count
--
-- not held
SELECT * FROM held ORDER BY name;
-- a session lock, re-entrant three times: held, depth 3; the other name is untouched
SELECT lock_named('lv-a'), lock_named('lv-a'), try_lock_named('lv-a');
SELECT * FROM held ORDER BY name;
SELECT unlock_named('lv-a');
SELECT * FROM held WHERE name = 'lv-a';
SELECT unlock_named('lv-a'), unlock_named('lv-a');
SELECT * FROM held WHERE name = 'lv-a';
-- a transaction lock: held inside the transaction, gone after COMMIT
BEGIN;
SELECT xact_lock_named('lv-a');
SELECT * FROM held WHERE name = 'lv-a';
SELECT try_xact_lock_named('lv-a');
SELECT * FROM held WHERE name = 'lv-a';
COMMIT;
SELECT * FROM held WHERE name = 'lv-a';
-- ... and after ROLLBACK
BEGIN;
SELECT xact_lock_named_shared('lv-a');
SELECT * FROM held WHERE name = 'lv-a';
ROLLBACK;
SELECT * FROM held WHERE name = 'lv-a';
-- shared: held_shared, not held (held is the exclusive mode only)
SELECT lock_named_shared('lv-a'), lock_named_shared('lv-a');
SELECT * FROM held WHERE name = 'lv-a';
-- both modes at once (a session does not conflict with itself): the sum of the holds
SELECT lock_named('lv-a');
SELECT * FROM held WHERE name = 'lv-a';
-- session and transaction scope together
BEGIN;
SELECT xact_lock_named('lv-a'), xact_lock_named_shared('lv-a');
SELECT * FROM held WHERE name = 'lv-a';
COMMIT;
SELECT * FROM held WHERE name = 'lv-a';
SELECT unlock_named('lv-a');
SELECT * FROM held WHERE name = 'lv-a';
SELECT unlock_named_shared('lv-a'), unlock_named_shared('lv-a');
SELECT * FROM held WHERE name = 'lv-a';
-- taken through the built-in functions on the name's key: the same lock, counted
SELECT pg_advisory_lock(named_lock_key('lv-b')), pg_advisory_lock(named_lock_key('lv-b'));
SELECT pg_advisory_lock_shared(named_lock_key('lv-b'));
SELECT * FROM held WHERE name = 'lv-b';
SELECT pg_advisory_unlock_all();
SELECT * FROM held ORDER BY name;
-- a timed lock and the _many functions count like the plain ones
SELECT lock_named('lv-a', '1s'), try_lock_named_shared('lv-a'), lock_many(ARRAY['lv-a', 'lv-b']);
SELECT * FROM held ORDER BY name;
SELECT pg_advisory_unlock_all();
-- pair locks are not names: a name that is also a pair's text is not held
SELECT lock_pair('lv-a', 'lv-a');
SELECT * FROM held WHERE name = 'lv-a';
SELECT unlock_pair('lv-a', 'lv-a');
-- asking takes nothing
SELECT * FROM my_locks;

-- NULL and empty names: 22004 and 22023, as for the lock functions
SELECT named_lock_held(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT named_lock_held_shared(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT named_lock_hold_count(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT named_lock_held('');
\echo :LAST_ERROR_SQLSTATE
SELECT named_lock_held_shared('');
\echo :LAST_ERROR_SQLSTATE
SELECT named_lock_hold_count('');
\echo :LAST_ERROR_SQLSTATE

--
-- lock_named_lease / named_lock_renew
--
-- argument errors: nothing is taken
SELECT lock_named_lease('lv-l', '0.5 s');
\echo :LAST_ERROR_SQLSTATE
SELECT lock_named_lease('lv-l', '0');
\echo :LAST_ERROR_SQLSTATE
SELECT lock_named_lease('lv-l', '-1 hour');
\echo :LAST_ERROR_SQLSTATE
SELECT lock_named_lease('lv-l', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT lock_named_lease('lv-l', '1000000 years');
\echo :LAST_ERROR_SQLSTATE
SELECT lock_named_lease('lv-l', '1 hour', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT lock_named_lease('lv-l', '0.5 s', '0');
\echo :LAST_ERROR_SQLSTATE
SELECT lock_named_lease('lv-l', '1 hour', '-1s');
\echo :LAST_ERROR_SQLSTATE
SELECT lock_named_lease(NULL, '1 hour');
\echo :LAST_ERROR_SQLSTATE
SELECT lock_named_lease(NULL, '1 hour', '0');
\echo :LAST_ERROR_SQLSTATE
SELECT lock_named_lease('', '1 hour');
\echo :LAST_ERROR_SQLSTATE
SELECT named_lock_renew(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT named_lock_renew('');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM my_locks;

-- the messages
\set VERBOSITY default
SELECT lock_named_lease('lv-l', '0.5 s');
SELECT lock_named_lease('lv-l', '1000000 years');
SELECT lock_named_lease('lv-l', NULL);
\set VERBOSITY terse

-- no lease yet: renew is false for a name not held, and for a held lock without a lease
SELECT named_lock_renew('lv-l') AS not_held;
SELECT lock_named('lv-p');
SELECT named_lock_renew('lv-p') AS plain_held;

-- a lease with timeout 0 on a free lock: taken at once, a session exclusive lock
SELECT lock_named_lease('lv-l', '1 hour', '0');
SELECT * FROM (SELECT named_lock_held('lv-l') AS held, named_lock_hold_count('lv-l') AS hold_count) s;
SELECT mode, granted FROM pg_locks
WHERE locktype = 'advisory' AND pid = pg_backend_pid()
  AND (classid::bigint << 32) | objid::bigint = named_lock_key('lv-l');
SELECT named_lock_renew('lv-l') AS leased;
-- with a lease active in the session: still false for the plain lock and a free name
SELECT named_lock_renew('lv-p') AS plain_held, named_lock_renew('lv-free') AS not_held;

-- lease_expires_at: the lease's end (now + lease) for the leased lock, NULL for the
-- plain one; queue_position is NULL for granted rows, idle_for NULL for an active session
SELECT lock_name, mode, granted, lease_expires_at IS NOT NULL AS leased,
       lease_expires_at > clock_timestamp() + interval '59 minutes' AS ends_in_an_hour,
       lease_expires_at <= clock_timestamp() + interval '1 hour' AS not_later,
       queue_position, idle_for, backend_state
FROM advisory_locks_v WHERE pid = pg_backend_pid() ORDER BY lock_name;
-- renewing moves the end later
SELECT set_config('regress.lease_end', (SELECT lease_expires_at::text FROM advisory_locks_v
                  WHERE pid = pg_backend_pid() AND lock_name = 'lv-l'), false) IS NOT NULL AS noted;
SELECT pg_sleep(0.01);
SELECT named_lock_renew('lv-l');
SELECT lease_expires_at > current_setting('regress.lease_end')::timestamptz AS later
FROM advisory_locks_v WHERE pid = pg_backend_pid() AND lock_name = 'lv-l';
-- a shared hold of a leased name has no lease of its own: only the exclusive row shows it
SELECT lock_named_shared('lv-l');
SELECT mode, lease_expires_at IS NOT NULL AS leased
FROM advisory_locks_v WHERE pid = pg_backend_pid() AND lock_name = 'lv-l' ORDER BY mode;
SELECT unlock_named_shared('lv-l');
-- the lease covers every hold: a re-entrant hold, released once, keeps it
SELECT lock_named('lv-l');
SELECT unlock_named('lv-l');
SELECT named_lock_renew('lv-l') AS still_leased, named_lock_hold_count('lv-l') AS hold_count;
-- the unlock that releases the last hold ends the lease
SELECT unlock_named('lv-l');
SELECT named_lock_renew('lv-l') AS after_unlock, named_lock_held('lv-l') AS held;
SELECT count(*) AS rows_left FROM advisory_locks_v WHERE pid = pg_backend_pid() AND lock_name = 'lv-l';
-- taken again without a lease: no lease shows, renew is false
SELECT lock_named('lv-l');
SELECT lease_expires_at IS NULL AS no_lease FROM advisory_locks_v
WHERE pid = pg_backend_pid() AND lock_name = 'lv-l';
SELECT named_lock_renew('lv-l') AS plain_again;
-- a lease on a lock already held (plain): leases that hold; the unlock of the lease's
-- own hold leaves the plain one, and the lease with it
SELECT lock_named_lease('lv-l', '1 hour');
SELECT named_lock_hold_count('lv-l') AS hold_count,
       (SELECT lease_expires_at IS NOT NULL FROM advisory_locks_v
         WHERE pid = pg_backend_pid() AND lock_name = 'lv-l') AS leased;
SELECT unlock_named('lv-l');
SELECT named_lock_renew('lv-l') AS leased_while_held;
SELECT unlock_named('lv-l');
SELECT named_lock_renew('lv-l') AS after_last_unlock;
-- taking a lease again restarts it with the new length
SELECT lock_named_lease('lv-l', '1 hour'), lock_named_lease('lv-l', '2 hours');
SELECT lease_expires_at > clock_timestamp() + interval '119 minutes' AS two_hours
FROM advisory_locks_v WHERE pid = pg_backend_pid() AND lock_name = 'lv-l';
-- a month counts 30 days
SELECT lock_named_lease('lv-month', '1 mon');
SELECT lease_expires_at > clock_timestamp() + interval '29 days 23:59' AS thirty_days,
       lease_expires_at <= clock_timestamp() + interval '30 days' AS not_later
FROM advisory_locks_v WHERE pid = pg_backend_pid() AND lock_name = 'lv-month';
-- released behind the lease's back (pg_advisory_unlock_all): the lease ends with it
SELECT pg_advisory_unlock_all();
SELECT named_lock_renew('lv-l') AS after_unlock_all, named_lock_renew('lv-month') AS month_after_unlock_all;
-- ... also by the built-in unlock on the key
SELECT lock_named_lease('lv-l', '1 hour');
SELECT pg_advisory_unlock(named_lock_key('lv-l'));
SELECT named_lock_renew('lv-l') AS after_builtin_unlock;
-- a lease inside a transaction block is a session lock: it outlives ROLLBACK
BEGIN;
SELECT lock_named_lease('lv-l', '1 hour');
ROLLBACK;
SELECT named_lock_held('lv-l') AS held, named_lock_renew('lv-l') AS leased;
SELECT unlock_named('lv-l');
-- a shared holder of the same name (this session) does not stop an exclusive lease
SELECT lock_named_shared('lv-l');
SELECT lock_named_lease('lv-l', '1 hour', '0');
SELECT named_lock_held('lv-l') AS held, named_lock_held_shared('lv-l') AS held_shared,
       named_lock_hold_count('lv-l') AS hold_count;
SELECT pg_advisory_unlock_all();
SELECT * FROM my_locks;

--
-- named_lock_idle_holders: its result columns, in order, from the catalog
--
SELECT a.name, format_type(a.type, NULL) AS type
FROM pg_proc p,
     unnest(p.proargnames, p.proallargtypes, p.proargmodes) WITH ORDINALITY AS a(name, type, argmode, n)
WHERE p.oid = 'named_lock_idle_holders(interval)'::regprocedure AND a.argmode = 't'
ORDER BY a.n;
-- its argument and default, strictness
SELECT pg_get_function_arguments('named_lock_idle_holders(interval)'::regprocedure) AS arguments,
       proisstrict, proretset
FROM pg_proc WHERE oid = 'named_lock_idle_holders(interval)'::regprocedure;
-- this session is active while it asks: its locks are never listed
SELECT lock_named('lv-idle'), lock_named_lease('lv-idle-lease', '1 hour');
SELECT count(*) AS mine FROM named_lock_idle_holders('0') WHERE pid = pg_backend_pid();
SELECT count(*) AS mine FROM named_lock_idle_holders() WHERE pid = pg_backend_pid();
BEGIN;
SELECT xact_lock_named('lv-idle-xact');
SELECT count(*) AS mine FROM named_lock_idle_holders('0') WHERE pid = pg_backend_pid();
COMMIT;
-- STRICT: NULL lists nothing
SELECT count(*) AS for_null FROM named_lock_idle_holders(NULL);
SELECT pg_advisory_unlock_all();

--
-- advisory_locks_v's columns and advisory_lock_status()'s output columns, in order
--
SELECT a.attnum, a.attname, format_type(a.atttypid, a.atttypmod) AS type
FROM pg_attribute a
WHERE a.attrelid = 'advisory_locks_v'::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum;
SELECT a.n AS position, a.name, format_type(a.type, NULL) AS type
FROM pg_proc p,
     unnest(p.proargnames, p.proallargtypes, p.proargmodes) WITH ORDINALITY AS a(name, type, argmode, n)
WHERE p.oid = 'advisory_lock_status()'::regprocedure AND a.argmode = 't'
ORDER BY a.n;
-- the new functions' volatility, parallel safety, strictness and result
SELECT p.oid::regprocedure AS function, p.prorettype::regtype AS result, p.provolatile,
       p.proparallel, p.proisstrict
FROM pg_proc p
WHERE p.proname IN ('lock_named_lease', 'named_lock_renew', 'named_lock_held',
                    'named_lock_held_shared', 'named_lock_hold_count', 'named_lock_idle_holders')
  AND p.pronamespace::regnamespace::text <> 'tests'
ORDER BY p.oid::regprocedure::text;

-- never a lock left behind
SELECT * FROM my_locks;

-- DISCARD ALL releases every advisory lock, and the lease with it (last: it also drops
-- the temporary views)
SELECT lock_named_lease('lv-l', '1 hour');
DISCARD ALL;
SELECT named_lock_renew('lv-l') AS after_discard_all, named_lock_held('lv-l') AS held;
SELECT count(*) AS locks_left FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
