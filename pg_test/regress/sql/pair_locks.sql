--
-- The two-key ("pair") space (DESIGN.md sections 2-3): every lock function as *_pair,
-- with (namespace text, name text) and (namespace text, id integer) overloads.
-- Key: (named_lock_key32(namespace), named_lock_key32(name)) or (named_lock_key32(namespace), id),
-- the same lock tag as pg_advisory_lock(int, int): pg_locks objsubid = 2.
--
CREATE TEMP VIEW my_locks AS
SELECT classid::bigint AS classid, objid::bigint AS objid, objsubid, mode, granted
FROM pg_locks
WHERE locktype = 'advisory' AND pid = pg_backend_pid();

-- (text, text): classid/objid are the 32-bit keys of namespace and name (as oids).
SELECT lock_pair('orders', 'order-17');
SELECT classid = named_lock_key32('orders')::oid::bigint AS classid_is_ns_key,
       objid = named_lock_key32('order-17')::oid::bigint AS objid_is_name_key,
       objsubid, mode, granted
FROM my_locks;
SELECT unlock_pair('orders', 'order-17');

-- (text, integer): objid is the id itself. md5('account') starts with e268443e, a
-- negative int4, so classid is its unsigned reading.
SELECT lock_pair('account', 42);
SELECT classid, classid = named_lock_key32('account')::oid::bigint AS classid_is_ns_key,
       classid = x'e268443e'::bigint AS classid_hex, objid, objsubid, mode
FROM my_locks;
SELECT unlock_pair('account', 42);

-- Negative, zero and extreme ids.
SELECT lock_pair('account', -1), lock_pair('account', 0),
       lock_pair('account', 2147483647), lock_pair('account', -2147483648);
SELECT objid FROM my_locks ORDER BY objid;
SELECT unlock_pair('account', -1), unlock_pair('account', 0),
       unlock_pair('account', 2147483647), unlock_pair('account', -2147483648);

-- The same lock as the built-in two-int4 functions, in both directions.
SELECT lock_pair('account', 42);
SELECT pg_advisory_lock(named_lock_key32('account'), 42);
SELECT count(*) AS rows_for_pair FROM my_locks;
SELECT pg_advisory_unlock(named_lock_key32('account'), 42);
SELECT unlock_pair('account', 42);
SELECT unlock_pair('account', 42);
SELECT pg_advisory_lock(named_lock_key32('orders'), named_lock_key32('order-17'));
SELECT unlock_pair('orders', 'order-17');
SELECT count(*) AS locks_held FROM my_locks;

-- Overload resolution: an untyped literal picks (text, text); an integer picks (text, integer).
-- So the name '42' and the id 42 are different locks.
SELECT lock_pair('ns', '42');
SELECT lock_pair('ns', 42);
SELECT objid = named_lock_key32('42')::oid::bigint AS text_42, objid = 42 AS id_42
FROM my_locks ORDER BY objid;
SELECT unlock_pair('ns', '42'), unlock_pair('ns', 42);

-- Namespaces separate equal names; pair space and bigint space are separate.
SELECT lock_pair('ns-a', 'job'), lock_pair('ns-b', 'job'), lock_named('job');
SELECT objsubid, count(*) FROM my_locks GROUP BY objsubid ORDER BY objsubid;
SELECT unlock_pair('ns-a', 'job'), unlock_pair('ns-b', 'job'), unlock_named('job');
SELECT unlock_pair('job', 'job');

-- Re-entrant and counted, with WARNING on the extra unlock, for both overloads.
SELECT lock_pair('ns', 'r'), lock_pair('ns', 'r');
SELECT unlock_pair('ns', 'r'), unlock_pair('ns', 'r');
SELECT unlock_pair('ns', 'r');
SELECT try_lock_pair('ns', 7), try_lock_pair('ns', 7);
SELECT unlock_pair('ns', 7), unlock_pair('ns', 7);
SELECT unlock_pair('ns', 7);

-- Shared variants, both overloads.
SELECT lock_pair_shared('ns', 'sh'), try_lock_pair_shared('ns', 'sh'),
       lock_pair_shared('ns', 8), try_lock_pair_shared('ns', 8);
SELECT objid = 8 AS is_id, mode, count(*) FROM my_locks GROUP BY 1, 2 ORDER BY 1;
SELECT unlock_pair_shared('ns', 'sh'), unlock_pair_shared('ns', 'sh'),
       unlock_pair_shared('ns', 8), unlock_pair_shared('ns', 8);
SELECT unlock_pair_shared('ns', 'sh');
SELECT unlock_pair_shared('ns', 8);
-- an exclusive unlock does not release a shared pair lock
SELECT lock_pair_shared('ns', 9);
SELECT unlock_pair('ns', 9);
SELECT unlock_pair_shared('ns', 9);
SELECT count(*) AS locks_held FROM my_locks;

-- Session pair locks survive COMMIT and ROLLBACK.
BEGIN;
SELECT lock_pair('keep', 'text-name'), lock_pair('keep', 1);
ROLLBACK;
BEGIN;
SELECT try_lock_pair_shared('keep', 'text-name-shared'), try_lock_pair_shared('keep', 2);
COMMIT;
SELECT mode, count(*) FROM my_locks GROUP BY mode ORDER BY mode;
SELECT unlock_pair('keep', 'text-name'), unlock_pair('keep', 1),
       unlock_pair_shared('keep', 'text-name-shared'), unlock_pair_shared('keep', 2);

-- Transaction-level pair locks: xact_lock_pair('account', 42) is
-- pg_advisory_xact_lock(named_lock_key32('account'), 42).
BEGIN;
SELECT xact_lock_pair('account', 42);
SELECT classid = named_lock_key32('account')::oid::bigint AS classid_is_ns_key,
       objid = 42 AS objid_is_id, objsubid, mode, granted
FROM my_locks;
SELECT pg_advisory_xact_lock(named_lock_key32('account'), 42);
SELECT count(*) AS rows_for_pair FROM my_locks;
COMMIT;
SELECT count(*) AS locks_after_commit FROM my_locks;

-- All transaction-level pair functions, both overloads; released at COMMIT ...
BEGIN;
SELECT xact_lock_pair('x-ns', 'a'), xact_lock_pair('x-ns', 1),
       xact_lock_pair_shared('x-ns', 'b'), xact_lock_pair_shared('x-ns', 2),
       try_xact_lock_pair('x-ns', 'c'), try_xact_lock_pair('x-ns', 3),
       try_xact_lock_pair_shared('x-ns', 'd'), try_xact_lock_pair_shared('x-ns', 4);
SELECT mode, objsubid, count(*) FROM my_locks GROUP BY mode, objsubid ORDER BY mode;
COMMIT;
SELECT count(*) AS locks_after_commit FROM my_locks;

-- ... and at ROLLBACK.
BEGIN;
SELECT xact_lock_pair('x-ns', 'a'), xact_lock_pair('x-ns', 1),
       xact_lock_pair_shared('x-ns', 'b'), xact_lock_pair_shared('x-ns', 2),
       try_xact_lock_pair('x-ns', 'c'), try_xact_lock_pair('x-ns', 3),
       try_xact_lock_pair_shared('x-ns', 'd'), try_xact_lock_pair_shared('x-ns', 4);
SELECT count(*) AS locks_in_xact FROM my_locks;
ROLLBACK;
SELECT count(*) AS locks_after_rollback FROM my_locks;

-- A transaction-level pair lock cannot be unlocked.
BEGIN;
SELECT xact_lock_pair('x-ns', 5);
SELECT unlock_pair('x-ns', 5);
SELECT count(*) AS still_held FROM my_locks;
COMMIT;
SELECT count(*) AS locks_held FROM my_locks;
