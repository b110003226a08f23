-- 5. this extension, transaction lock: one statement, released at its commit
SELECT xact_lock_named(:name);
