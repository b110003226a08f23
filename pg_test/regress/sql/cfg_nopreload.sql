-- Without shared_preload_libraries. PostgreSQL 17+: the registry lives in dynamic
-- shared memory and names work. PostgreSQL 15/16 (expected/cfg_nopreload_1.out): locks
-- work, names are not remembered, and a NOTICE says so once per session.
SELECT storage FROM named_lock_registry_info();
-- sized by pg_named_locks.max_names = 777 from postgresql.conf (scripts/sql-tests.sh),
-- although the library is not preloaded; without a registry (15/16) the capacity is NULL
SHOW pg_named_locks.max_names;
SELECT capacity FROM named_lock_registry_info();
SELECT lock_named('nopreload-job');
SELECT try_lock_pair('nopreload', 7);
SELECT lock_name, key_kind, mode, granted
  FROM advisory_locks_v WHERE pid = pg_backend_pid() ORDER BY key_kind;
SELECT named_lock_name(named_lock_key('nopreload-job'));
SELECT named_lock_holders('nopreload-job') = ARRAY[pg_backend_pid()] AS held;
SELECT unlock_named('nopreload-job'), unlock_pair('nopreload', 7);
-- fencing tokens: PostgreSQL 17+ keep the counter in dynamic shared memory; 15/16 say
-- that the library must be preloaded
SELECT lock_named_fenced('nopreload-fenced') >> 47 AS timeline;
SELECT named_lock_check('nopreload-fenced', 1);
SELECT unlock_named('nopreload-fenced');
-- leases and "do I hold it?" are backend-local and work either way; the lease's end
-- shows in the view only where there is a registry (17+)
SELECT lock_named_lease('nopreload-lease', '1 hour', '0');
SELECT named_lock_held('nopreload-lease') AS held, named_lock_hold_count('nopreload-lease') AS hold_count,
       named_lock_renew('nopreload-lease') AS renewed;
SELECT lease_expires_at IS NOT NULL AS lease_shown
  FROM advisory_locks_v WHERE pid = pg_backend_pid() AND lock_key = named_lock_key('nopreload-lease');
SELECT count(*) AS idle_holders FROM named_lock_idle_holders('0') WHERE pid = pg_backend_pid();
SELECT unlock_named('nopreload-lease');
SELECT named_lock_renew('nopreload-lease') AS after_unlock, named_lock_held('nopreload-lease') AS held;
