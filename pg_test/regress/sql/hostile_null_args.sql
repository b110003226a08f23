--
-- Hostile input: NULL in every argument position of every function of the extension,
-- enumerated from the catalog (pg_proc joined with pg_depend on the extension), so a
-- function added later is covered without editing this file and shows up here as a
-- diff. The other arguments are valid ('x', 1, '1s', ARRAY['x']). Each call runs in its
-- own subtransaction (a PL/pgSQL exception block). Outcome: an ERROR with its SQLSTATE
-- (22004 for NULL names, elements, ids and timeouts), or the result a STRICT function
-- gives for NULL input; never a crash, and never a lock left behind (session locks
-- survive the rollback of the exception block, and a call that did not raise keeps its
-- transaction locks too, so any lock taken shows in pg_locks right after the call).
--
-- (A build with the pgrx test feature adds #[pg_test] functions in schema "tests"; they
-- are not part of the extension's API and are left out.)
CREATE TEMP VIEW ext_functions AS
SELECT p.oid, p.proname, p.pronargs, p.proargtypes::oid[] AS argtypes, p.proisstrict,
       p.proretset, p.oid::regprocedure::text AS signature
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_named_locks'
WHERE n.nspname <> 'tests';

-- A valid argument of a type, as SQL.
CREATE FUNCTION pg_temp.valid_arg(t regtype) RETURNS text LANGUAGE sql AS $$
    SELECT CASE t WHEN 'text'::regtype THEN $q$'x'::text$q$
                  WHEN 'integer'::regtype THEN '1::integer'
                  WHEN 'bigint'::regtype THEN '1::bigint'
                  WHEN 'interval'::regtype THEN $q$'1s'::interval$q$
                  WHEN 'text[]'::regtype THEN $q$ARRAY['x']::text[]$q$
             END
$$;

-- Every (function, NULL position): the outcome and the advisory locks held right after.
CREATE FUNCTION pg_temp.null_matrix()
RETURNS TABLE (signature text, null_arg int, outcome text, locks_after bigint)
LANGUAGE plpgsql AS $$
DECLARE
    f record;
    args text[];
    call text;
    res text;
BEGIN
    FOR f IN SELECT * FROM ext_functions WHERE pronargs > 0 ORDER BY signature LOOP
        FOR pos IN 1 .. f.pronargs LOOP
            args := ARRAY(SELECT CASE WHEN i = pos
                                      THEN 'NULL::' || format_type(f.argtypes[i - 1], NULL)
                                      ELSE pg_temp.valid_arg(f.argtypes[i - 1]::regtype) END
                          FROM generate_series(1, f.pronargs) AS i ORDER BY i);
            IF array_position(args, NULL) IS NOT NULL THEN
                RAISE EXCEPTION 'no valid argument known for a type of %', f.signature;
            END IF;
            call := format('%s(%s)', f.oid::regproc, array_to_string(args, ', '));
            BEGIN
                IF f.proretset THEN
                    EXECUTE format('SELECT count(*)::text FROM %s', call) INTO res;
                    outcome := 'returned ' || res || ' rows';
                ELSE
                    EXECUTE format('SELECT (%s)::text', call) INTO res;
                    outcome := 'returned ' || coalesce(quote_literal(res), 'NULL');
                END IF;
            EXCEPTION WHEN OTHERS THEN
                outcome := 'ERROR ' || SQLSTATE || ': ' || SQLERRM;
            END;
            signature := f.signature;
            null_arg := pos;
            locks_after := (SELECT count(*) FROM pg_locks
                            WHERE locktype = 'advisory' AND pid = pg_backend_pid());
            RETURN NEXT;
            -- a leaked session lock must not mask the next call's
            PERFORM pg_advisory_unlock_all();
        END LOOP;
    END LOOP;
END
$$;

SELECT * FROM pg_temp.null_matrix();

-- The summary the list above must satisfy: only documented outcomes, no lock taken.
-- A non-STRICT function raises 22004; a STRICT one returns NULL without being called
-- (a STRICT set-returning one, no rows).
SELECT f.proisstrict AS strict,
       CASE WHEN m.outcome LIKE 'ERROR 22004:%' THEN 'ERROR 22004'
            WHEN m.outcome = 'returned NULL' THEN 'NULL result'
            WHEN m.outcome = 'returned 0 rows' AND f.proretset THEN 'no rows'
            ELSE 'UNEXPECTED: ' || m.outcome END AS outcome,
       count(*) AS calls, sum(m.locks_after) AS locks_taken
FROM pg_temp.null_matrix() m JOIN ext_functions f ON f.signature = m.signature
GROUP BY 1, 2 ORDER BY 1, 2;

-- Functions without arguments have no NULL position (listed so a new one is noticed).
SELECT signature FROM ext_functions WHERE pronargs = 0 ORDER BY signature;

-- How many functions and NULL positions the matrix covered. (A new function changes
-- these counts: check its rows above, then update the expected output.)
SELECT count(*) AS functions,
       count(*) FILTER (WHERE pronargs > 0) AS with_arguments,
       sum(pronargs) AS null_positions
FROM ext_functions;

-- The same calls inside an explicit transaction block: the failed calls roll back to
-- their savepoint, the transaction goes on, and at its end nothing is held.
BEGIN;
SELECT count(*) AS calls, count(*) FILTER (WHERE locks_after > 0) AS calls_leaving_locks
FROM pg_temp.null_matrix();
SELECT count(*) AS locks_in_xact FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
COMMIT;

-- NULLs of every type at once, and untyped NULLs where overloads allow resolving.
SELECT lock_pair(NULL, NULL::integer, NULL);
SELECT lock_many(NULL, NULL);
SELECT xact_lock_named(NULL, NULL);
SELECT named_lock_name(NULL, NULL);
SELECT named_lock_name(NULL) IS NULL AS strict_null;
SELECT count(*) AS locks_held FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();

-- The backend survived all of it.
SELECT 'alive' AS backend;
