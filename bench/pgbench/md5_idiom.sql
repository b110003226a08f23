-- 2. the SQL md5 idiom (the key named_lock_key computes, in SQL)
SELECT pg_advisory_lock(('x' || substr(md5(:name), 1, 16))::bit(64)::bigint);
SELECT pg_advisory_unlock(('x' || substr(md5(:name), 1, 16))::bit(64)::bigint);
