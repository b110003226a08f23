--
-- Transaction-level named locks in one session (DESIGN.md section 3): xact_lock_named,
-- try_xact_lock_named and the _shared variants; released at COMMIT and ROLLBACK.
--
CREATE TEMP VIEW my_locks AS
SELECT classid::bigint AS classid, objid::bigint AS objid, objsubid, mode, granted
FROM pg_locks
WHERE locktype = 'advisory' AND pid = pg_backend_pid();

CREATE FUNCTION pg_temp.is_key(classid bigint, objid bigint, k bigint) RETURNS boolean
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT classid = (k >> 32) & 4294967295 AND objid = k & 4294967295 $$;

-- Released at COMMIT.
BEGIN;
SELECT xact_lock_named('t-exclusive');
SELECT xact_lock_named_shared('t-shared');
SELECT try_xact_lock_named('t-try');
SELECT try_xact_lock_named_shared('t-try-shared');
SELECT n, objsubid, mode, granted
FROM my_locks,
     (VALUES ('t-exclusive'), ('t-shared'), ('t-try'), ('t-try-shared')) AS v(n)
WHERE pg_temp.is_key(classid, objid, named_lock_key(n))
ORDER BY n;
SELECT count(*) AS locks_in_xact FROM my_locks;
COMMIT;
SELECT count(*) AS locks_after_commit FROM my_locks;

-- Released at ROLLBACK.
BEGIN;
SELECT xact_lock_named('t-exclusive');
SELECT xact_lock_named_shared('t-shared');
SELECT try_xact_lock_named('t-try');
SELECT try_xact_lock_named_shared('t-try-shared');
SELECT count(*) AS locks_in_xact FROM my_locks;
ROLLBACK;
SELECT count(*) AS locks_after_rollback FROM my_locks;

-- Released when the transaction fails.
BEGIN;
SELECT xact_lock_named('t-error');
SELECT count(*) AS locks_in_xact FROM my_locks;
SELECT 1 / 0;
ROLLBACK;
SELECT count(*) AS locks_after_error FROM my_locks;

-- Outside a transaction block the statement is the transaction: the lock is gone
-- as soon as the statement ends.
SELECT xact_lock_named('t-autocommit');
SELECT try_xact_lock_named('t-autocommit');
SELECT count(*) AS locks_after_statement FROM my_locks;

-- The lock is held while the statement runs.
SELECT (SELECT count(*) FROM my_locks) AS held_during_statement
FROM (SELECT xact_lock_named('t-in-statement') OFFSET 0) AS s;
SELECT count(*) AS locks_after_statement FROM my_locks;

-- Re-entrant: one pg_locks row however often it is taken, all released at COMMIT.
BEGIN;
SELECT xact_lock_named('t-twice');
SELECT xact_lock_named('t-twice');
SELECT try_xact_lock_named('t-twice');
SELECT count(*) AS rows_for_t_twice FROM my_locks;
COMMIT;
SELECT count(*) AS locks_after_commit FROM my_locks;

-- Exclusive and shared on one name in one transaction.
BEGIN;
SELECT xact_lock_named('t-both');
SELECT xact_lock_named_shared('t-both');
SELECT mode FROM my_locks ORDER BY mode;
COMMIT;
SELECT count(*) AS locks_after_commit FROM my_locks;

-- The same lock as pg_advisory_xact_lock(named_lock_key(...)).
BEGIN;
SELECT xact_lock_named('t-builtin');
SELECT pg_advisory_xact_lock(named_lock_key('t-builtin'));
SELECT pg_advisory_xact_lock_shared(named_lock_key('t-builtin'));
SELECT xact_lock_named_shared('t-builtin');
SELECT mode, pg_temp.is_key(classid, objid, named_lock_key('t-builtin')) AS same_key
FROM my_locks ORDER BY mode;
COMMIT;

-- A transaction-level lock cannot be released with unlock_named (like the built-ins):
-- false + WARNING, and it stays held until the end of the transaction.
BEGIN;
SELECT xact_lock_named('t-no-unlock');
SELECT unlock_named('t-no-unlock');
SELECT pg_advisory_unlock(named_lock_key('t-no-unlock'));
SELECT xact_lock_named_shared('t-no-unlock-shared');
SELECT unlock_named_shared('t-no-unlock-shared');
SELECT count(*) AS still_held FROM my_locks;
COMMIT;
SELECT count(*) AS locks_after_commit FROM my_locks;

-- Session and transaction holds of one lock in one transaction: the transaction hold
-- ends at COMMIT, the session hold stays until unlocked.
BEGIN;
SELECT lock_named('t-mixed');
SELECT xact_lock_named('t-mixed');
SELECT count(*) AS rows_for_t_mixed FROM my_locks;
COMMIT;
SELECT count(*) AS session_hold_remains FROM my_locks;
SELECT unlock_named('t-mixed');
SELECT unlock_named('t-mixed');
SELECT count(*) AS locks_held FROM my_locks;

-- Savepoints: a lock taken in a subtransaction that is rolled back is released, like
-- pg_advisory_xact_lock; one taken in a released subtransaction stays with the transaction.
BEGIN;
SELECT xact_lock_named('t-outer');
SAVEPOINT a;
SELECT xact_lock_named('t-rolled-back-sp');
SELECT pg_advisory_xact_lock(named_lock_key('t-rolled-back-sp-builtin'));
ROLLBACK TO SAVEPOINT a;
SAVEPOINT b;
SELECT xact_lock_named('t-released-sp');
RELEASE SAVEPOINT b;
SELECT n, count(*) FILTER (WHERE pg_temp.is_key(classid, objid, named_lock_key(n))) AS held
FROM my_locks,
     (VALUES ('t-outer'), ('t-rolled-back-sp'), ('t-rolled-back-sp-builtin'),
             ('t-released-sp')) AS v(n)
GROUP BY n ORDER BY n;
COMMIT;
SELECT count(*) AS locks_after_commit FROM my_locks;

-- Works in a read-only transaction (no table writes).
BEGIN READ ONLY;
SELECT xact_lock_named('t-read-only');
SELECT try_xact_lock_named_shared('t-read-only-shared');
SELECT count(*) AS locks_in_xact FROM my_locks;
COMMIT;
SELECT count(*) AS locks_after_commit FROM my_locks;

-- Prepared transactions (max_prepared_transactions > 0 on the test server): as with
-- pg_advisory_xact_lock, PREPARE TRANSACTION hands the transaction-level lock over to
-- the prepared transaction (pg_locks pid NULL), which holds it - also against this
-- session - until COMMIT PREPARED / ROLLBACK PREPARED.
CREATE TEMP VIEW prepared_locks AS
SELECT classid::bigint AS classid, objid::bigint AS objid, objsubid, mode, granted
FROM pg_locks
WHERE locktype = 'advisory' AND pid IS NULL
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database());
BEGIN;
SELECT xact_lock_named('t-2pc');
SELECT xact_lock_pair_shared('t-2pc', 1);
PREPARE TRANSACTION 'named_locks_2pc';
SELECT count(*) AS held_by_this_session FROM my_locks;
SELECT CASE objsubid WHEN 1 THEN pg_temp.is_key(classid, objid, named_lock_key('t-2pc'))
                    ELSE classid = named_lock_key32('t-2pc')::oid::bigint AND objid = 1 END AS ours,
       objsubid, mode, granted
FROM prepared_locks ORDER BY objsubid;
SELECT try_lock_named('t-2pc') AS can_take_it, try_lock_pair('t-2pc', 1) AS can_take_pair;
SELECT try_lock_pair_shared('t-2pc', 1) AS can_share_pair;
SELECT unlock_pair_shared('t-2pc', 1);
ROLLBACK PREPARED 'named_locks_2pc';
SELECT count(*) AS prepared_locks_left FROM prepared_locks;
SELECT try_lock_named('t-2pc') AS can_take_it_now, unlock_named('t-2pc');

-- A session lock taken in a prepared transaction stays with the session.
BEGIN;
SELECT lock_named('t-2pc-session');
PREPARE TRANSACTION 'named_locks_2pc_session';
SELECT count(*) AS held_by_this_session FROM my_locks;
COMMIT PREPARED 'named_locks_2pc_session';
SELECT unlock_named('t-2pc-session');

-- Holding the same lock at session and at transaction level cannot be prepared
-- (the lock manager refuses, as for the built-ins); the transaction is rolled back.
BEGIN;
SELECT lock_named('t-2pc-mixed');
SELECT xact_lock_named('t-2pc-mixed');
PREPARE TRANSACTION 'named_locks_2pc_mixed';
SELECT count(*) AS session_hold_remains FROM my_locks;
SELECT count(*) AS prepared FROM pg_prepared_xacts WHERE gid LIKE 'named_locks_2pc%';
SELECT unlock_named('t-2pc-mixed');
SELECT count(*) AS locks_held FROM my_locks;
