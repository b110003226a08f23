-- The name registry and advisory_locks_v on a preloaded server (single session).
SELECT storage FROM named_lock_registry_info();

-- Every kind of named lock shows by name, with its key columns.
SELECT lock_named('reg-exclusive'), lock_named_shared('reg-shared'),
       lock_pair('reg-ns', 'reg-item'), lock_pair_shared('reg-account', -7);
BEGIN;
SELECT xact_lock_named('reg-xact'), xact_lock_pair('reg-ns', 'reg-xact-item');
SELECT lock_name, key_kind,
       lock_key = named_lock_key(lock_name) AS key_matches,
       key1 = named_lock_key32(split_part(lock_name, ':', 1)) AS key1_matches,
       key2, mode, granted, held_since IS NOT NULL AS has_held_since,
       waiting_since, blocked_by, database = current_database() AS this_db,
       usename = current_user AS me
  FROM advisory_locks_v WHERE pid = pg_backend_pid() ORDER BY lock_name;
COMMIT;
-- transaction locks are gone from the view after COMMIT
SELECT lock_name FROM advisory_locks_v WHERE pid = pg_backend_pid() ORDER BY lock_name;

-- A name registered without locking labels a lock taken with the built-ins.
SELECT register_lock_name('reg-by-client') = named_lock_key('reg-by-client') AS same_key;
SELECT pg_advisory_lock(named_lock_key('reg-by-client'));
SELECT lock_name FROM advisory_locks_v
 WHERE pid = pg_backend_pid() AND lock_key = named_lock_key('reg-by-client');
-- a key nobody registered shows by key only
SELECT pg_advisory_lock(4242);
SELECT lock_name, lock_key FROM advisory_locks_v WHERE pid = pg_backend_pid() AND lock_key = 4242;

-- Look-ups.
SELECT named_lock_name(named_lock_key('reg-exclusive')),
       named_lock_name(named_lock_key32('reg-ns'), named_lock_key32('reg-item')),
       named_lock_name(named_lock_key32('reg-account'), -7),
       named_lock_name(1::bigint) AS unknown;
SELECT named_lock_holders('reg-exclusive') = ARRAY[pg_backend_pid()] AS holder,
       named_lock_holders('reg-nobody') AS nobody;

-- Read-only transactions can lock and register: nothing is written.
BEGIN;
SET TRANSACTION READ ONLY;
SELECT xact_lock_named('reg-read-only');
SELECT register_lock_name('reg-read-only-registered') IS NOT NULL AS registered;
SELECT lock_name FROM advisory_locks_v WHERE pid = pg_backend_pid() AND lock_name LIKE 'reg-read-only%';
COMMIT;

-- Long names are hashed whole and stored cut at a character boundary, marked "…".
SELECT lock_named(repeat('名', 100) || '-tail');
SELECT length(lock_name), right(lock_name, 2), truncated
  FROM named_lock_registry() WHERE lock_name LIKE '名名%';
SELECT count(*) FROM advisory_locks_v
 WHERE pid = pg_backend_pid() AND lock_key = named_lock_key(repeat('名', 100) || '-tail');

-- Two names with one key (md5 of 'c5373' and 'c45389' share 4 bytes): reported, not merged.
SELECT named_lock_key32('c5373') = named_lock_key32('c45389') AS same_key32;
SELECT lock_pair('reg-coll', 'c5373');
SELECT try_lock_pair('reg-coll', 'c45389');
SELECT lock_name FROM advisory_locks_v
 WHERE pid = pg_backend_pid() AND key1 = named_lock_key32('reg-coll');
SELECT collisions > 0 AS collision_counted FROM named_lock_registry_info();

SELECT pg_advisory_unlock_all();
SELECT count(*) FROM advisory_locks_v WHERE pid = pg_backend_pid();

-- The view and its name source are readable by everyone; names are filtered inside.
SELECT has_table_privilege('public', 'advisory_locks_v', 'SELECT') AS view_public,
       has_function_privilege('public', 'named_lock_registry()', 'EXECUTE') AS registry_public;
