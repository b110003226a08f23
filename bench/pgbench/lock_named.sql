-- 5. this extension
SELECT lock_named('bench-' || :id);
SELECT unlock_named('bench-' || :id);
