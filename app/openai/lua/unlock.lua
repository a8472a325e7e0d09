-- unlock: give a batch's lock back only if it is still ours.
-- KEYS: [1] the lock
-- ARGV: [1] our token
-- Returns 1 released, 0 not ours (any more).
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
