-- released: a held task is in the work queue now (published and confirmed): count it there.
-- KEYS: [1] the owner's released set, [2] their held set, [3] the model's holders set
-- ARGV: [1] task id, [2] owner, [3] ttl
-- Returns 1 moved, 0 the task was not held (ended, or moved already).
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[1], score, ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
if redis.call('ZCARD', KEYS[2]) == 0 then redis.call('SREM', KEYS[3], ARGV[2]) end
return 1
