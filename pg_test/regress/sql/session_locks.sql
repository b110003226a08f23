--
-- Session-level named locks in one session (DESIGN.md sections 2-3): lock_named,
-- try_lock_named, unlock_named and the _shared variants.
--
-- This session's advisory locks, as pg_locks shows them. classid/objid are printed as
-- bigint so the expected output does not depend on oid output; pids are never printed.
CREATE TEMP VIEW my_locks AS
SELECT classid::bigint AS classid, objid::bigint AS objid, objsubid, mode, granted
FROM pg_locks
WHERE locktype = 'advisory' AND pid = pg_backend_pid();

-- The high and low 32 bits of a bigint key, as pg_locks shows them (unsigned).
CREATE FUNCTION pg_temp.hi(k bigint) RETURNS bigint LANGUAGE sql IMMUTABLE
    AS $$ SELECT (k >> 32) & 4294967295 $$;
CREATE FUNCTION pg_temp.lo(k bigint) RETURNS bigint LANGUAGE sql IMMUTABLE
    AS $$ SELECT k & 4294967295 $$;

SELECT * FROM my_locks;

-- lock_named returns void and takes the bigint-space advisory lock of named_lock_key:
-- classid/objid are its high/low 32 bits, objsubid = 1 (same as pg_advisory_lock(bigint)).
SELECT lock_named('x');
SELECT * FROM my_locks;
SELECT classid = pg_temp.hi(named_lock_key('x')) AS classid_is_high_bits,
       objid = pg_temp.lo(named_lock_key('x')) AS objid_is_low_bits,
       objsubid = 1 AS bigint_space
FROM my_locks;
-- md5('x') starts with 9dd4e461 268c8034
SELECT classid = x'9dd4e461'::bigint AS classid_hex, objid = x'268c8034'::bigint AS objid_hex
FROM my_locks;

-- The very same lock as pg_advisory_lock(named_lock_key('x')): taking it with the
-- built-in adds a hold on the same pg_locks row, and either kind of unlock releases it.
SELECT pg_advisory_lock(named_lock_key('x'));
SELECT count(*) AS rows_for_x FROM my_locks;
SELECT pg_advisory_unlock(named_lock_key('x'));
SELECT unlock_named('x');
SELECT * FROM my_locks;

-- The other way round: a lock taken by key is released by name.
SELECT pg_advisory_lock(named_lock_key('by-key'));
SELECT unlock_named('by-key');
SELECT count(*) AS locks_held FROM my_locks;

-- Re-entrant and counted: two locks need two unlocks; the third unlock returns false
-- with the lock manager's WARNING, like pg_advisory_unlock.
SELECT lock_named('job');
SELECT lock_named('job');
SELECT count(*) AS rows_for_job FROM my_locks;
SELECT unlock_named('job');
SELECT count(*) AS still_held FROM my_locks;
SELECT unlock_named('job');
SELECT unlock_named('job');
SELECT count(*) AS locks_held FROM my_locks;

-- Unlocking a lock that was never taken: false + WARNING, same as the built-in.
SELECT unlock_named('never-locked');
SELECT pg_advisory_unlock(named_lock_key('never-locked'));
SELECT unlock_named_shared('never-locked');
SELECT pg_advisory_unlock_shared(named_lock_key('never-locked'));

-- try_lock_named: true when acquired; re-entrant in the holding session.
SELECT try_lock_named('t');
SELECT try_lock_named('t');
SELECT * FROM my_locks;
SELECT unlock_named('t'), unlock_named('t');
SELECT unlock_named('t');

-- Shared mode: ShareLock, counted the same way.
SELECT lock_named_shared('s');
SELECT try_lock_named_shared('s');
SELECT classid = pg_temp.hi(named_lock_key('s')) AND objid = pg_temp.lo(named_lock_key('s')) AS same_key,
       objsubid, mode, granted
FROM my_locks;
SELECT unlock_named_shared('s');
SELECT unlock_named_shared('s');
SELECT unlock_named_shared('s');
SELECT count(*) AS locks_held FROM my_locks;

-- Exclusive and shared on one name in one session: a session never conflicts with
-- itself, both are granted as separate pg_locks rows, and each mode has its own unlock.
SELECT lock_named('m');
SELECT lock_named_shared('m');
SELECT try_lock_named('m'), try_lock_named_shared('m');
SELECT mode, granted, count(*) FROM my_locks GROUP BY mode, granted ORDER BY mode;
-- releasing the shared holds leaves the exclusive ones
SELECT unlock_named_shared('m'), unlock_named_shared('m');
SELECT unlock_named_shared('m');
SELECT mode FROM my_locks;
SELECT unlock_named('m'), unlock_named('m');
SELECT count(*) AS locks_held FROM my_locks;

-- An exclusive unlock does not release a shared hold (and vice versa).
SELECT lock_named_shared('only-shared');
SELECT unlock_named('only-shared');
SELECT mode FROM my_locks;
SELECT unlock_named_shared('only-shared');

-- Different names are different locks; nothing is normalised.
SELECT lock_named('Job'), lock_named('job'), lock_named('job ');
SELECT count(*) AS three_locks FROM my_locks;
SELECT unlock_named('Job'), unlock_named('job'), unlock_named('job ');

-- Long and multibyte names lock like any other.
SELECT lock_named(repeat('long-ünïcödé-name-', 10000));
SELECT lock_named('日本語 🚀');
SELECT count(*) AS two_locks,
       bool_and(objsubid = 1) AS bigint_space,
       count(*) FILTER (WHERE classid = pg_temp.hi(named_lock_key('日本語 🚀'))
                          AND objid = pg_temp.lo(named_lock_key('日本語 🚀'))) AS unicode_row
FROM my_locks;
SELECT unlock_named(repeat('long-ünïcödé-name-', 10000)), unlock_named('日本語 🚀');

-- The bigint space is not the pair space: a pair lock with the same 64 bits is another lock.
SELECT lock_named('x');
SELECT pg_advisory_unlock(named_lock_key32('x'), (named_lock_key('x') & 4294967295)::bigint::bit(32)::int);
SELECT unlock_named('x');

-- Session locks survive COMMIT and ROLLBACK, like pg_advisory_lock.
BEGIN;
SELECT lock_named('survives-commit');
SELECT lock_named_shared('survives-commit-shared');
SELECT try_lock_named('survives-commit-try');
COMMIT;
BEGIN;
SELECT lock_named('survives-rollback');
SELECT try_lock_named_shared('survives-rollback-shared');
ROLLBACK;
BEGIN;
SELECT lock_named('survives-error');
SELECT 1 / 0;
ROLLBACK;
BEGIN;
SAVEPOINT sp;
SELECT lock_named('survives-rollback-to-savepoint');
ROLLBACK TO SAVEPOINT sp;
COMMIT;
SELECT mode, count(*) FROM my_locks GROUP BY mode ORDER BY mode;
SELECT n, EXISTS (SELECT FROM my_locks
                  WHERE classid = pg_temp.hi(named_lock_key(n))
                    AND objid = pg_temp.lo(named_lock_key(n))) AS held
FROM (VALUES ('survives-commit'), ('survives-commit-shared'), ('survives-commit-try'),
             ('survives-rollback'), ('survives-rollback-shared'), ('survives-error'),
             ('survives-rollback-to-savepoint')) AS v(n)
ORDER BY n;

-- An unlock is not undone by ROLLBACK either.
BEGIN;
SELECT unlock_named('survives-commit');
ROLLBACK;
SELECT unlock_named('survives-commit');

-- pg_advisory_unlock_all() releases named locks too (they are ordinary advisory locks).
SELECT pg_advisory_unlock_all();
SELECT count(*) AS locks_held FROM my_locks;

-- Locking needs no table writes: it works in a read-only transaction.
BEGIN READ ONLY;
SELECT lock_named('read-only');
SELECT try_lock_named_shared('read-only-shared');
SELECT unlock_named('read-only'), unlock_named_shared('read-only-shared');
COMMIT;
SELECT count(*) AS locks_held FROM my_locks;
