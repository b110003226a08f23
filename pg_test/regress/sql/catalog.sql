--
-- The extension's SQL objects and their properties (DESIGN.md sections 3-4).
--
SELECT extname, extrelocatable, n.nspname AS schema
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE extname = 'pg_named_locks';

-- (A build with the pgrx test feature adds its #[pg_test] functions in schema "tests";
-- they are not part of the extension's API and are left out.)
CREATE TEMP VIEW ext_functions AS
SELECT p.oid, p.proname, pg_get_function_identity_arguments(p.oid) AS args,
       p.prorettype::regtype || CASE WHEN p.proretset THEN ' (set)' ELSE '' END AS result,
       p.provolatile, p.proparallel,
       p.proisstrict, p.prosecdef, p.prokind, n.nspname
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_named_locks'
WHERE n.nspname <> 'tests';

-- Every function of the extension. (A new or changed function shows up here: update the
-- expected output deliberately.)
SELECT proname, args, result, provolatile, proparallel, proisstrict, prosecdef
FROM ext_functions
ORDER BY proname, args;

-- Lock functions (lock/try/unlock, session/xact, exclusive/shared, every key space) are
-- VOLATILE and PARALLEL RESTRICTED like the built-ins, and not STRICT (a NULL argument
-- must raise, not skip locking); the key functions are IMMUTABLE and PARALLEL SAFE (and
-- not STRICT either: NULL raises). No function is SECURITY DEFINER; all are plain
-- functions in the extension's schema.
SELECT CASE WHEN proname ~ '^(try_)?(xact_)?(un)?lock_[a-z]+(_shared)?$' THEN 'lock function'
            WHEN proname ~ '^named_lock_key(32)?$' THEN 'key function'
            ELSE 'other' END AS kind,
       provolatile, proparallel, proisstrict, prosecdef, prokind, nspname, count(*)
FROM ext_functions
WHERE proname ~ '^(try_)?(xact_)?(un)?lock_[a-z]+(_shared)?$' OR proname ~ '^named_lock_key(32)?$'
GROUP BY 1, 2, 3, 4, 5, 6, 7
ORDER BY 1;
SELECT count(*) AS security_definer_functions FROM ext_functions WHERE prosecdef;

-- The built-in advisory lock functions have the same volatility and parallel safety.
SELECT DISTINCT provolatile, proparallel
FROM pg_proc
WHERE proname ~ '^pg_(try_)?advisory_(xact_)?(un)?lock'
  AND pronamespace = 'pg_catalog'::regnamespace;

-- Every lock function without a timeout has a matching built-in with the same result
-- type: lock_* -> pg_advisory_*, try_* -> pg_try_advisory_*, unlock_* ->
-- pg_advisory_unlock_*. The timeout overloads (boolean results) have none: blank rows.
SELECT f.proname, f.args, b.oid::regprocedure AS builtin
FROM ext_functions f
LEFT JOIN pg_proc b
       ON b.pronamespace = 'pg_catalog'::regnamespace
      AND b.proname = regexp_replace(f.proname, '^(try_)?(xact_)?(un)?lock_(named|pair)(_shared)?$',
                                     'pg_\1advisory_\2\3lock\5')
      AND b.prorettype = (SELECT prorettype FROM pg_proc WHERE oid = f.oid)
      AND b.pronargs = (CASE WHEN f.proname ~ '_pair' THEN 2 ELSE 1 END)
WHERE f.proname ~ '^(try_)?(xact_)?(un)?lock_(named|pair)(_shared)?$'
ORDER BY f.proname, f.args;

-- Lock and key functions are callable by any role (EXECUTE granted to PUBLIC); the
-- functions that are not are listed.
SELECT count(*) AS lock_and_key_functions,
       count(*) FILTER (WHERE has_function_privilege('public', oid, 'EXECUTE')) AS public_execute
FROM ext_functions
WHERE proname ~ '^(try_)?(xact_)?(un)?lock_(named|pair)(_shared)?$' OR proname ~ '^named_lock_key(32)?$';
SELECT proname, args AS not_executable_by_public
FROM ext_functions WHERE NOT has_function_privilege('public', oid, 'EXECUTE')
ORDER BY 1, 2;

CREATE ROLE regress_named_locks_user;
SET ROLE regress_named_locks_user;
SELECT lock_named('as-unprivileged-role'), try_xact_lock_pair('ns', 1);
SELECT unlock_named('as-unprivileged-role');
RESET ROLE;
DROP ROLE regress_named_locks_user;

-- Immutable key functions can be used in index expressions and constraints.
CREATE TEMP TABLE jobs (name text PRIMARY KEY,
                        lock_key bigint GENERATED ALWAYS AS (named_lock_key(name)) STORED,
                        ns_key integer CHECK (ns_key = named_lock_key32('jobs')));
CREATE INDEX jobs_key_idx ON jobs (named_lock_key(name));
INSERT INTO jobs (name, ns_key) VALUES ('daily-report-job', named_lock_key32('jobs'));
SELECT name, lock_key = named_lock_key(name) AS generated_ok FROM jobs;
SET enable_seqscan = off;
SELECT name FROM jobs WHERE named_lock_key(name) = named_lock_key('daily-report-job');
RESET enable_seqscan;
