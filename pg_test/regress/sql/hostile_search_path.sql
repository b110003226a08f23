--
-- Hostile search_path: an ordinary role owns a schema placed first on the search_path
-- (ahead of pg_catalog) that shadows what the extension's SQL could use unqualified:
-- md5, substr, now, hashtext, the operators || and = , pg_backend_pid,
-- pg_blocking_pids, the extension's own named_lock_key and named_lock_registry, and
-- relations named pg_locks, pg_stat_activity and pg_database (also as temporary
-- relations, which an unqualified name finds first). The lock functions (C code), the
-- view advisory_locks_v (a plain view: its references are bound when it is created) and
-- named_lock_stats must give the real answers regardless.
--
CREATE ROLE regress_hostile_owner;
CREATE SCHEMA regress_hostile AUTHORIZATION regress_hostile_owner;
SET ROLE regress_hostile_owner;
CREATE FUNCTION regress_hostile.md5(text) RETURNS text LANGUAGE sql
    AS $$ SELECT 'ffffffffffffffffffffffffffffffff'::text $$;
CREATE FUNCTION regress_hostile.substr(text, integer, integer) RETURNS text LANGUAGE sql
    AS $$ SELECT '0000000000000000'::text $$;
CREATE FUNCTION regress_hostile.now() RETURNS timestamptz LANGUAGE sql
    AS $$ SELECT '2000-01-01 00:00:00+00'::timestamptz $$;
CREATE FUNCTION regress_hostile.hashtext(text) RETURNS integer LANGUAGE sql AS $$ SELECT 0 $$;
CREATE FUNCTION regress_hostile.pg_backend_pid() RETURNS integer LANGUAGE sql AS $$ SELECT 1 $$;
CREATE FUNCTION regress_hostile.pg_blocking_pids(integer) RETURNS integer[] LANGUAGE sql
    AS $$ SELECT ARRAY[1] $$;
CREATE FUNCTION regress_hostile.named_lock_key(text) RETURNS bigint LANGUAGE sql AS $$ SELECT 42::bigint $$;
CREATE FUNCTION regress_hostile.named_lock_registry()
RETURNS TABLE (kind text, classid oid, objid oid, objsubid smallint, lock_name text,
               truncated boolean, held_by integer, held_since timestamptz)
LANGUAGE sql AS $$ SELECT 'bigint', 0::oid, 0::oid, 1::int2, 'pwned', false, 1, now() $$;
CREATE FUNCTION regress_hostile.always(text, text) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
CREATE FUNCTION regress_hostile.always_oid(oid, oid) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
CREATE FUNCTION regress_hostile.pwned(text, text) RETURNS text LANGUAGE sql AS $$ SELECT 'pwned'::text $$;
CREATE OPERATOR regress_hostile.= (LEFTARG = text, RIGHTARG = text, FUNCTION = regress_hostile.always);
CREATE OPERATOR regress_hostile.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = regress_hostile.always_oid);
CREATE OPERATOR regress_hostile.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = regress_hostile.pwned);
CREATE TABLE regress_hostile.pg_locks AS
    SELECT 'advisory'::text AS locktype, 0::oid AS database, 0::oid AS classid, 0::oid AS objid,
           1::int2 AS objsubid, 1 AS pid, 'ExclusiveLock'::text AS mode, true AS granted,
           NULL::timestamptz AS waitstart
    FROM generate_series(1, 100);
CREATE VIEW regress_hostile.pg_stat_activity AS
    SELECT 1 AS pid, 'pwned'::name AS usename, 'pwned'::text AS application_name,
           NULL::inet AS client_addr, 'pwned'::text AS state, NULL::timestamptz AS state_change;
CREATE TABLE regress_hostile.pg_database AS SELECT 0::oid AS oid, 'pwned'::name AS datname;
GRANT USAGE ON SCHEMA regress_hostile TO PUBLIC;
GRANT SELECT ON ALL TABLES IN SCHEMA regress_hostile TO PUBLIC;
RESET ROLE;

-- What the real answers are, computed before the attack.
CREATE TEMP TABLE expected AS
SELECT n AS lock_name, named_lock_key(n) AS lock_key
FROM unnest(ARRAY['sp-a', 'sp-b']) AS n;

-- A superuser (the victim) now runs with the hostile schema first, and temporary
-- relations that shadow the catalog views.
CREATE TEMP VIEW pg_locks AS SELECT * FROM regress_hostile.pg_locks;
CREATE TEMP VIEW pg_stat_activity AS SELECT * FROM regress_hostile.pg_stat_activity;
SET search_path = regress_hostile, pg_catalog, public;

-- The shadowing works for unqualified SQL (so the checks below mean something).
SELECT md5('x') AS md5, substr('abc', 1, 2) AS substr, now() AS now, hashtext('x') AS hashtext,
       'a' = 'b' AS text_eq, 'a' || 'b' AS concat, named_lock_key('sp-a') AS named_lock_key,
       pg_backend_pid() AS pid, (SELECT count(*) FROM pg_locks) AS pg_locks_rows,
       (SELECT usename FROM pg_stat_activity) AS usename;

-- The extension's functions, qualified as a careful caller would, are unaffected.
SELECT public.lock_named('sp-a'), public.lock_named_shared('sp-b', '1s'),
       public.lock_pair('sp-ns', 'sp-item'), public.lock_pair('sp-ns', 7),
       public.lock_many(ARRAY['sp-m1', 'sp-m2']);
CREATE TEMP TABLE seen_view AS
SELECT * FROM public.advisory_locks_v
WHERE pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid();
CREATE TEMP TABLE seen_stats AS
SELECT * FROM public.named_lock_stats
WHERE lock_name OPERATOR(pg_catalog.=) ANY (ARRAY['sp-a', 'sp-b', 'sp-m1', 'sp-m2', 'sp-ns', 'sp-ns:sp-item']);
CREATE TEMP TABLE seen_other AS
SELECT public.named_lock_key('sp-a') AS key_a,
       public.named_lock_name(public.named_lock_key('sp-a')) AS name_a,
       public.named_lock_name(public.named_lock_key32('sp-ns'), 7) AS name_ns_7,
       public.named_lock_holders('sp-a') AS holders_a,
       public.register_lock_name('sp-registered') AS registered,
       (SELECT pg_catalog.count(*) FROM pg_catalog.pg_locks l
         WHERE l.locktype OPERATOR(pg_catalog.=) 'advisory'
           AND l.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()) AS real_lock_rows,
       (SELECT pg_catalog.count(*) FROM public.advisory_locks_v) AS view_rows_all,
       (SELECT pg_catalog.count(*) FROM pg_catalog.pg_locks l
         WHERE l.locktype OPERATOR(pg_catalog.=) 'advisory') AS real_rows_all,
       pg_catalog.pg_backend_pid() AS real_pid;
RESET search_path;
DROP VIEW pg_temp.pg_locks, pg_temp.pg_stat_activity;

-- The view: one row per real lock of this backend, with the right names, keys,
-- database, user and timestamps (not the hostile now()).
SELECT v.lock_name, v.key_kind, v.mode, v.granted,
       v.lock_key = named_lock_key(v.lock_name) AS key_ok,
       v.key1 = named_lock_key32(split_part(v.lock_name, ':', 1)) AS key1_ok,
       v.database = current_database() AS db_ok, v.usename = current_user AS user_ok,
       v.backend_state, v.blocked_by,
       v.held_since > '2000-01-02' AS held_since_real
FROM seen_view v ORDER BY v.lock_name, v.mode;
SELECT (SELECT count(*) FROM seen_view) AS view_rows, real_lock_rows,
       view_rows_all = real_rows_all AS all_rows_match,
       key_a = (SELECT lock_key FROM expected WHERE lock_name = 'sp-a') AS key_a_ok,
       name_a, name_ns_7, holders_a = ARRAY[real_pid] AS holders_ok,
       registered = named_lock_key('sp-registered') AS registered_ok
FROM seen_other;
SELECT lock_name, key_kind, acquisitions > 0 AS acquired,
       immediate_acquisitions = acquisitions AS immediate,
       last_acquired > '2000-01-02' AS last_acquired_real
FROM seen_stats ORDER BY lock_name;
SELECT pg_advisory_unlock_all();

--
-- The same with the extension installed in a schema of its own, in a database of its
-- own, and the hostile schema on the path of a non-superuser caller.
--
CREATE DATABASE regress_named_locks_schema;
\c regress_named_locks_schema
CREATE SCHEMA nl;
CREATE EXTENSION pg_named_locks SCHEMA nl;
SELECT n.nspname AS extension_schema
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'pg_named_locks';
-- every object of the extension is in that schema
SELECT count(*) AS objects_elsewhere
FROM pg_depend d
LEFT JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
WHERE d.refclassid = 'pg_extension'::regclass
  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_named_locks')
  AND d.deptype = 'e'
  AND coalesce(p.pronamespace, c.relnamespace) <> 'nl'::regnamespace;
CREATE ROLE regress_hostile_caller;
GRANT USAGE ON SCHEMA nl TO regress_hostile_caller;
CREATE SCHEMA regress_hostile AUTHORIZATION regress_hostile_caller;
SET ROLE regress_hostile_caller;
CREATE FUNCTION regress_hostile.md5(text) RETURNS text LANGUAGE sql
    AS $$ SELECT 'ffffffffffffffffffffffffffffffff'::text $$;
CREATE FUNCTION regress_hostile.named_lock_registry()
RETURNS TABLE (kind text, classid oid, objid oid, objsubid smallint, lock_name text,
               truncated boolean, held_by integer, held_since timestamptz)
LANGUAGE sql AS $$ SELECT 'bigint', 0::oid, 0::oid, 1::int2, 'pwned', false, 1, now() $$;
CREATE FUNCTION regress_hostile.advisory_lock_status()
RETURNS TABLE (dbid oid, pid integer, lock_name text) LANGUAGE sql
    AS $$ SELECT 0::oid, 1, 'pwned'::text $$;
CREATE FUNCTION regress_hostile.always(text, text) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR regress_hostile.= (LEFTARG = text, RIGHTARG = text, FUNCTION = regress_hostile.always);
CREATE TABLE regress_hostile.pg_locks AS SELECT 1 AS pid;
SET search_path = regress_hostile, pg_catalog, nl;
SELECT nl.lock_named('sp-schema'), nl.lock_pair('sp-schema-ns', 'sp-item');
SELECT v.lock_name, v.key_kind,
       v.lock_key OPERATOR(pg_catalog.=) nl.named_lock_key(v.lock_name) AS key_ok,
       v.usename OPERATOR(pg_catalog.=) session_user AS user_ok
FROM nl.advisory_locks_v v
WHERE v.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()
ORDER BY v.lock_name;
SELECT lock_name, acquisitions OPERATOR(pg_catalog.>) 0 AS acquired FROM nl.named_lock_stats
WHERE lock_name OPERATOR(pg_catalog.~~) 'sp-schema%' ORDER BY lock_name;
-- the extension's functions found through the path: the hostile schema comes first for
-- names that exist in both, so a caller who puts an untrusted schema first gets that
-- schema's function (as with any function): qualify, or keep such schemas off the path
SELECT md5('x') AS md5_hijacked, named_lock_key('sp-schema') = nl.named_lock_key('sp-schema') AS key_not_shadowed;
RESET search_path;
SELECT nl.unlock_named('sp-schema'), nl.unlock_pair('sp-schema-ns', 'sp-item');
RESET ROLE;
SET client_min_messages = warning;
DROP SCHEMA regress_hostile CASCADE;
DROP EXTENSION pg_named_locks;
\c regress_named_locks
DROP DATABASE regress_named_locks_schema;
DROP ROLE regress_hostile_caller;

SET client_min_messages = warning;
DROP SCHEMA regress_hostile CASCADE;
RESET client_min_messages;
DROP ROLE regress_hostile_owner;
SELECT count(*) AS locks_held FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
