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
-- fencing tokens are the primary's: 25006 with a hint; the check just answers
\set VERBOSITY default
SELECT lock_named_fenced('standby-fenced');
\echo :LAST_ERROR_SQLSTATE
SELECT try_xact_lock_named_fenced('standby-fenced');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
SELECT named_lock_check('standby-fenced', 1), named_lock_token('standby-fenced');
SELECT count(*) AS locks_left FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
