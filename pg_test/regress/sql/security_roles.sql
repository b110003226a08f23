--
-- Security with real roles (all named regress_*, dropped at the end):
--  - an ordinary role with no grants can call every lock function (enumerated from the
--    catalog);
--  - named_lock_stats_reset() is refused to PUBLIC and allowed through a granted role;
--  - lock names are private: another role sees '<insufficient privilege>' in
--    advisory_locks_v, named_lock_stats, named_lock_registry() and named_lock_name(),
--    the role itself, a role with its privileges and members of pg_read_all_stats see
--    them. The registry records the role that last used a name (current_user at the
--    call), so SET ROLE in one session is enough to test it;
--  - the settings: ordinary roles cannot change the superuser settings (42501) in any
--    way, nor max_names (55P02).
--
CREATE ROLE regress_sec_plain;
CREATE ROLE regress_sec_other;
CREATE ROLE regress_sec_stats IN ROLE pg_read_all_stats;
CREATE ROLE regress_sec_member IN ROLE regress_sec_plain;
CREATE ROLE regress_sec_monitor;

CREATE TEMP VIEW my_locks AS
SELECT classid::bigint AS classid, objid::bigint AS objid, objsubid, mode, granted
FROM pg_locks
WHERE locktype = 'advisory' AND pid = pg_backend_pid();
GRANT SELECT ON my_locks TO PUBLIC;

--
-- Every lock function, enumerated from the catalog, called once as the ordinary role
-- with valid arguments: first every locking function, then every unlock (which then
-- finds a session hold to release).
--
CREATE FUNCTION pg_temp.call_all_lock_functions()
RETURNS TABLE (signature text, result text)
LANGUAGE plpgsql AS $$
DECLARE
    f record;
    args text;
    r text;
BEGIN
    FOR f IN
        SELECT p.oid, p.oid::regprocedure::text AS sig, p.proargtypes::oid[] AS argtypes,
               p.proname ~ '^unlock' AS is_unlock, p.proname ~ '_lease$' AS is_lease
        FROM pg_proc p
        JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                        AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
        JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_named_locks'
        WHERE p.proname ~ '^(try_)?(xact_)?(un)?lock_' AND p.pronamespace::regnamespace::text <> 'tests'
        ORDER BY 4, 2
    LOOP
        SELECT string_agg(CASE t WHEN 'text'::regtype THEN $q$'sec-x'$q$
                                 WHEN 'integer'::regtype THEN '1'
                                 -- (a lease of an hour: this session is idle between
                                 -- statements, and a lease that ran out would end it)
                                 WHEN 'interval'::regtype THEN CASE WHEN f.is_lease THEN $q$'1 hour'::interval$q$
                                                                    ELSE $q$'1s'::interval$q$ END
                                 WHEN 'text[]'::regtype THEN $q$ARRAY['sec-x', 'sec-y']$q$ END,
                          ', ' ORDER BY i)
          INTO args
          FROM unnest(f.argtypes::regtype[]) WITH ORDINALITY AS a(t, i);
        BEGIN
            EXECUTE format('SELECT %s(%s)::text', f.oid::regproc, args) INTO r;
            result := coalesce(r, 'NULL');
        EXCEPTION WHEN OTHERS THEN
            result := 'ERROR ' || SQLSTATE || ': ' || SQLERRM;
        END;
        signature := f.sig;
        RETURN NEXT;
    END LOOP;
END
$$;

SET ROLE regress_sec_plain;
SELECT current_user;
SELECT * FROM pg_temp.call_all_lock_functions();
SELECT count(*) AS functions_called,
       count(*) FILTER (WHERE result LIKE 'ERROR%') AS errors
FROM pg_temp.call_all_lock_functions();
-- (the second round left session holds behind: every lock function took one, every
-- unlock released one)
SELECT count(*) > 0 AS holds_left FROM my_locks;
SELECT pg_advisory_unlock_all();
SELECT count(*) AS locks_held FROM my_locks;
-- key and look-up functions too
SELECT named_lock_key('sec-x') = named_lock_key('sec-x') AS key, named_lock_key32('sec-x') IS NOT NULL AS key32,
       register_lock_name('sec-registered') IS NOT NULL AS registered,
       named_lock_name(named_lock_key('sec-registered')) AS looked_up,
       named_lock_holders('sec-x') AS holders;
RESET ROLE;

--
-- named_lock_stats_reset(): refused to an ordinary role (42501); allowed to a member
-- of a role it is granted to; refused again after REVOKE.
--
\set VERBOSITY sqlstate
SET ROLE regress_sec_plain;
SELECT named_lock_stats_reset();
RESET ROLE;
GRANT EXECUTE ON FUNCTION named_lock_stats_reset() TO regress_sec_monitor;
GRANT regress_sec_monitor TO regress_sec_plain;
SET ROLE regress_sec_plain;
SELECT named_lock_stats_reset();
RESET ROLE;
REVOKE regress_sec_monitor FROM regress_sec_plain;
SET ROLE regress_sec_plain;
SELECT named_lock_stats_reset();
RESET ROLE;
REVOKE EXECUTE ON FUNCTION named_lock_stats_reset() FROM regress_sec_monitor;
\set VERBOSITY default

--
-- Privacy. regress_sec_plain takes session locks (held across the SET ROLEs below).
--
SET ROLE regress_sec_plain;
SELECT lock_named('sec-secret'), lock_pair('sec-secret-ns', 'sec-item'),
       lock_pair('sec-secret-acct', 42), register_lock_name('sec-secret-registered');
RESET ROLE;

-- What the current role sees of those names. Registry entries are picked by key (so
-- hidden ones are found too); statistics rows have no key, so for them: the names
-- visible, and whether the role sees as many rows as a superuser (names are hidden,
-- rows are not).
SELECT set_config('regress.stats_rows', (SELECT count(*) FROM named_lock_stats)::text, false) IS NOT NULL AS noted;
CREATE FUNCTION pg_temp.what_i_see()
RETURNS TABLE (viewer name, source text, names text)
LANGUAGE sql AS $$
    SELECT current_user, 'advisory_locks_v',
           string_agg(lock_name, ', ' ORDER BY lock_name)
    FROM advisory_locks_v WHERE pid = pg_backend_pid()
    UNION ALL
    SELECT current_user, 'named_lock_stats',
           concat_ws(', ', string_agg(lock_name, ', ' ORDER BY lock_name),
                     CASE WHEN (SELECT count(*) FROM named_lock_stats)
                               = current_setting('regress.stats_rows')::bigint
                          THEN '(all rows)' ELSE '(rows missing)' END)
    FROM named_lock_stats
    WHERE lock_name LIKE 'sec-secret%'
    UNION ALL
    SELECT current_user, 'named_lock_registry()',
           string_agg(r.lock_name, ', ' ORDER BY r.kind, r.lock_name)
    FROM named_lock_registry() r
    JOIN (VALUES ('bigint', named_lock_key('sec-secret')),
                 ('bigint', named_lock_key('sec-secret-registered')),
                 ('pair', (named_lock_key32('sec-secret-ns')::bigint << 32)
                          | (named_lock_key32('sec-item')::bigint & 4294967295)),
                 ('namespace', named_lock_key32('sec-secret-acct')::bigint & 4294967295))
         AS k(kind, key)
      ON r.kind = k.kind
     AND CASE r.kind WHEN 'namespace' THEN r.classid::bigint
                     ELSE (r.classid::bigint << 32) | r.objid::bigint END = k.key
    UNION ALL
    SELECT current_user, 'named_lock_name()',
           concat_ws(', ', named_lock_name(named_lock_key('sec-secret')),
                     named_lock_name(named_lock_key32('sec-secret-ns'), named_lock_key32('sec-item')),
                     named_lock_name(named_lock_key32('sec-secret-acct'), 42),
                     named_lock_name(named_lock_key('sec-secret-registered')))
$$;

-- the role itself, a member of it, pg_read_all_stats, and a superuser see the names
SET ROLE regress_sec_plain;
SELECT * FROM pg_temp.what_i_see();
SET ROLE regress_sec_member;
SELECT * FROM pg_temp.what_i_see();
SET ROLE regress_sec_stats;
SELECT * FROM pg_temp.what_i_see();
RESET ROLE;
SELECT * FROM pg_temp.what_i_see();
-- another ordinary role does not (it sees that the locks exist, and their keys)
SET ROLE regress_sec_other;
SELECT * FROM pg_temp.what_i_see();
SELECT count(*) AS rows, count(*) FILTER (WHERE lock_name = '<insufficient privilege>') AS hidden,
       count(*) FILTER (WHERE lock_key = named_lock_key('sec-secret')) AS by_key
FROM advisory_locks_v WHERE pid = pg_backend_pid();

-- A name two roles collide on: the warning must not reveal the other role's name.
-- (md5 of 'c5373' and 'c45389' share their first 4 bytes, so as namespaces they are
-- one key32.)
RESET ROLE;
SET ROLE regress_sec_plain;
SELECT lock_pair('c5373', 1);
SET ROLE regress_sec_other;
SELECT lock_pair('c45389', 2);
RESET ROLE;
SELECT unlock_pair('c45389', 2);

-- Using a name makes the user its last user: once regress_sec_other locks 'sec-secret'
-- too (it knew the name), the name is shown to it, and no longer to regress_sec_plain
-- (README "Names are data": the role that last used the name).
SET ROLE regress_sec_other;
SELECT register_lock_name('sec-secret') = named_lock_key('sec-secret') AS registered;
SELECT named_lock_name(named_lock_key('sec-secret'));
SET ROLE regress_sec_plain;
SELECT named_lock_name(named_lock_key('sec-secret'));
RESET ROLE;
SELECT pg_advisory_unlock_all();

--
-- Settings. Contexts: max_names postmaster, the other two superuser.
--
SELECT name, context FROM pg_settings WHERE name LIKE 'pg_named_locks.%' ORDER BY name;
SET ROLE regress_sec_plain;
\set VERBOSITY sqlstate
SET pg_named_locks.track_stats = off;
SET pg_named_locks.max_locks_per_session = 0;
BEGIN;
SET LOCAL pg_named_locks.track_stats = off;
ROLLBACK;
SELECT set_config('pg_named_locks.track_stats', 'off', false);
SELECT set_config('pg_named_locks.max_locks_per_session', '100000', true);
SET pg_named_locks.max_names = 20;
SET pg_named_locks.no_such_setting = 1;
ALTER ROLE regress_sec_plain SET pg_named_locks.track_stats = off;
\set VERBOSITY default
SHOW pg_named_locks.track_stats;
SHOW pg_named_locks.max_locks_per_session;
RESET ROLE;
-- a superuser cannot change max_names either without a restart
\set VERBOSITY sqlstate
SET pg_named_locks.max_names = 20;
\set VERBOSITY default
-- GRANT SET ON PARAMETER delegates one superuser setting to a role
GRANT SET ON PARAMETER pg_named_locks.track_stats TO regress_sec_plain;
SET ROLE regress_sec_plain;
SET pg_named_locks.track_stats = off;
SHOW pg_named_locks.track_stats;
\set VERBOSITY sqlstate
SET pg_named_locks.max_locks_per_session = 0;
\set VERBOSITY default
RESET pg_named_locks.track_stats;
RESET ROLE;
REVOKE SET ON PARAMETER pg_named_locks.track_stats FROM regress_sec_plain;

SELECT count(*) AS locks_held FROM my_locks;
DROP ROLE regress_sec_member;
DROP ROLE regress_sec_plain;
DROP ROLE regress_sec_other;
DROP ROLE regress_sec_stats;
DROP ROLE regress_sec_monitor;
