-- Run on a streaming hot standby of the main test server: no table is ever written,
-- so locks, the registry and the view work in recovery.
SELECT pg_is_in_recovery();
SELECT storage FROM named_lock_registry_info();
SELECT lock_named('standby-job');
BEGIN;
SELECT xact_lock_pair('standby-account', 42);
SELECT try_xact_lock_named_shared('standby-report');
SELECT lock_name, key_kind, mode, granted, held_since IS NOT NULL AS has_held_since
  FROM advisory_locks_v WHERE pid = pg_backend_pid() ORDER BY lock_name;
COMMIT;
SELECT named_lock_name(named_lock_key('standby-job'));
SELECT register_lock_name('standby-registered') = named_lock_key('standby-registered') AS registered;
SELECT unlock_named('standby-job');
SELECT count(*) FROM advisory_locks_v WHERE pid = pg_backend_pid();
-- leases and "do I hold it?" need no writes: they work in recovery
SELECT lock_named_lease('standby-lease', '1 hour');
SELECT named_lock_held('standby-lease') AS held, named_lock_hold_count('standby-lease') AS hold_count,
       named_lock_renew('standby-lease') AS renewed;
SELECT lock_name, lease_expires_at IS NOT NULL AS leased
  FROM advisory_locks_v WHERE pid = pg_backend_pid();
SELECT unlock_named('standby-lease');
SELECT named_lock_renew('standby-lease') AS after_unlock;
-- fencing tokens are the primary's: 25006 with a hint; the check just answers
\set VERBOSITY default
SELECT lock_named_fenced('standby-fenced');
\echo :LAST_ERROR_SQLSTATE
SELECT try_xact_lock_named_fenced('standby-fenced');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
SELECT named_lock_check('standby-fenced', 1), named_lock_token('standby-fenced');
SELECT count(*) AS locks_left FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
