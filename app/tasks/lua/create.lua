-- create: a submitted task that is not queued (an identical request's cached answer makes it
-- `succeeded` at once), published on its channel and indexed for its owner.
-- KEYS: [1] task hash, [2] its change channel, [3] owner's index, [4] owner's index of the model
-- ARGV: [1] ttl, [2] created_at (the index score), [3] task id, [4] oldest index score kept,
--       [5] status, then field pairs
-- Returns 1 created, 0 a record of that id exists already.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[5], 'seq', 1, unpack(ARGV, 6))
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('PUBLISH', KEYS[2], cjson.encode({seq = 1, status = ARGV[5]}))
for i = 3, 4 do
  redis.call('ZADD', KEYS[i], ARGV[2], ARGV[3])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. ARGV[4])
  redis.call('EXPIRE', KEYS[i], ARGV[1])
end
return 1
