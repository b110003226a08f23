-- 3. a PL/pgSQL wrapper doing the md5 idiom (bench/sql/setup.sql)
SELECT bench_plpgsql_lock(:name);
SELECT bench_plpgsql_unlock(:name);
