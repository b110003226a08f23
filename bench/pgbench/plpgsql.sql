-- 3. a PL/pgSQL wrapper doing the md5 idiom (bench/sql/setup.sql)
SELECT bench_plpgsql_lock('bench-' || :id);
SELECT bench_plpgsql_unlock('bench-' || :id);
