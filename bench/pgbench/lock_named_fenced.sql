-- 5. this extension, fenced: the grant returns its fencing token
SELECT lock_named_fenced(:name);
SELECT unlock_named(:name);
