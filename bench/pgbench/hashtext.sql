-- 4. the 32-bit hashtext idiom, for reference
SELECT pg_advisory_lock(hashtext(:name));
SELECT pg_advisory_unlock(hashtext(:name));
