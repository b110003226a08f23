--
-- Security properties of the extension's functions and views, enumerated from the
-- catalog (a new function shows up here as a diff): every function is SECURITY
-- INVOKER; no function carries per-function settings (proconfig); volatility and
-- parallel safety as documented (lock functions VOLATILE PARALLEL RESTRICTED like the
-- built-ins, key functions IMMUTABLE PARALLEL SAFE, monitoring PARALLEL SAFE); and who
-- may execute what.
--
CREATE TEMP VIEW ext_functions AS
SELECT p.oid, p.proname, p.oid::regprocedure::text AS signature, p.prosecdef, p.proconfig,
       p.provolatile, p.proparallel, p.proleakproof, p.proacl
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_named_locks'
WHERE n.nspname <> 'tests';

-- Per function: security, settings, volatility, parallel safety, and whether PUBLIC may
-- execute it.
SELECT signature,
       CASE WHEN prosecdef THEN 'DEFINER' ELSE 'invoker' END AS security,
       proconfig,
       provolatile, proparallel, proleakproof,
       has_function_privilege('public', oid, 'EXECUTE') AS public_execute
FROM ext_functions
ORDER BY signature;

-- The rules the list must satisfy (each count must be 0).
SELECT count(*) FILTER (WHERE prosecdef) AS security_definer,
       count(*) FILTER (WHERE proconfig IS NOT NULL) AS unexpected_settings,
       count(*) FILTER (WHERE proname ~ '^(try_)?(xact_)?(un)?lock_(named|pair|many)(_shared)?$'
                          AND (provolatile <> 'v' OR proparallel <> 'r')) AS lock_fn_not_volatile_restricted,
       count(*) FILTER (WHERE proname ~ '^named_lock_key(32)?$'
                          AND (provolatile <> 'i' OR proparallel <> 's')) AS key_fn_not_immutable_safe,
       count(*) FILTER (WHERE proparallel = 'u') AS parallel_unsafe,
       count(*) FILTER (WHERE proleakproof) AS leakproof
FROM ext_functions;

-- No function carries settings: advisory_locks_v is a plain view whose references are
-- bound when it is created (see hostile_search_path.sql).
SELECT signature, unnest(proconfig) AS setting FROM ext_functions
WHERE proconfig IS NOT NULL ORDER BY 1, 2;

-- Explicit ACLs: only named_lock_stats_reset() is taken away from PUBLIC.
SELECT signature, proacl FROM ext_functions WHERE proacl IS NOT NULL ORDER BY 1;

-- The views: readable by PUBLIC, owned by the installing superuser, no options that
-- would change whose privileges apply (security_invoker / security_barrier).
SELECT c.relname, c.relkind, c.reloptions, pg_get_userbyid(c.relowner) = current_user AS owned_by_installer,
       has_table_privilege('public', c.oid, 'SELECT') AS public_select,
       has_table_privilege('public', c.oid, 'INSERT') AS public_insert
FROM pg_class c
JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
                AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_named_locks'
ORDER BY c.relname;

-- Nothing else: functions and the two views; no tables, sequences, operators, types or
-- event triggers that a role could write to or hook. (PostgreSQL 18 also records the
-- views' row types, and their array types, as members: left out.)
SELECT classid::regclass AS catalog, count(*)
FROM pg_depend
WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_named_locks')
  AND NOT (classid = 'pg_type'::regclass
           AND objid IN (SELECT t.oid FROM pg_type t
                         LEFT JOIN pg_type e ON e.oid = t.typelem
                         WHERE t.typrelid <> 0 OR e.typrelid <> 0))
GROUP BY 1 ORDER BY 1;

-- The settings and their contexts: max_names needs a restart; the other two are
-- superuser settings (an ordinary role cannot turn statistics off or lift its cap).
SELECT name, context, vartype, boot_val FROM pg_settings
WHERE name LIKE 'pg_named_locks.%' ORDER BY name;
