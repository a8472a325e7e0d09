-- record_chunk: record the tasks of a batch chunk, once: only if `dispatched` is still where
-- the chunk starts (a worker that lost its lock records nothing).
-- KEYS: [1] batch hash, [2] its task list, [3] its set of open tasks
-- ARGV: [1] start, [2] ttl, then task ids
-- Returns how many were recorded (0: not this worker's turn).
if tonumber(redis.call('HGET', KEYS[1], 'dispatched') or '-1') ~= tonumber(ARGV[1]) then
  return 0
end
local n = #ARGV - 2
redis.call('RPUSH', KEYS[2], unpack(ARGV, 3))
redis.call('SADD', KEYS[3], unpack(ARGV, 3))
redis.call('HINCRBY', KEYS[1], 'dispatched', n)
redis.call('HDEL', KEYS[1], 'chunk')
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[3], ARGV[2])
return n
