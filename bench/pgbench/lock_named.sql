-- 5. this extension
SELECT lock_named(:name);
SELECT unlock_named(:name);
