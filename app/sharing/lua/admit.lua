-- admit: a submit of one owner's tasks to one model, in one atomic step: the owner's limits
-- (the defaults, or the admin's overrides in the owner's limits hash), the priority they may
-- use, their count of tasks queued or running against its quota, a token from their submit
-- bucket, then each task created `pending` (published on its channel, indexed for its owner)
-- and routed: into the work queue ('d') while the owner's window has room and nothing of
-- theirs is held, else into their hold ('h').
-- KEYS: [1] bucket, [2] limits hash, [3] released set, [4] held set, [5] holders set, then per
--       task: its hash, its change channel, the owner's index, the owner's index of the model
-- ARGV: [1] ttl, [2] oldest score kept, [3] task count, [4] default rate, [5] default burst,
--       [6] default quota of tasks queued or running, [7] window, [8] fair share on (1|0),
--       [9] priority level, [10] default highest level, [11] owner, then per task: id,
--       creation time, field pair count, field pairs
-- Returns {'ok', tokens left, routes, rate, burst} or {'priority', highest level} or
--   {'active', count, quota} or {'rate', tokens left, seconds to wait, rate, burst}.
--- @include "includes/bucket.lua"
--- @include "../../tasks/lua/includes/states.lua"
local limits = {}
local raw = redis.call('HGETALL', KEYS[2])
for i = 1, #raw, 2 do limits[raw[i]] = tonumber(raw[i + 1]) end
local rate = limits['submits_per_s'] or tonumber(ARGV[4])
local burst = limits['submit_burst'] or tonumber(ARGV[5])
local quota = limits['active_tasks'] or tonumber(ARGV[6])
local highest = limits['max_priority'] or tonumber(ARGV[10])
if tonumber(ARGV[9]) > highest then return {'priority', tostring(highest)} end
local ttl = ARGV[1]
local oldest = ARGV[2]
local n = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. oldest)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. oldest)
local released = redis.call('ZCARD', KEYS[3])
local held = redis.call('ZCARD', KEYS[4])
if quota >= 0 and released + held + n > quota then
  return {'active', tostring(released + held), tostring(quota)}
end
local take = take_tokens(KEYS[1], rate, burst, 1, redis_now())
if take[1] == 0 then return {'rate', take[2], take[3], tostring(rate), tostring(burst)} end
local window = tonumber(ARGV[7])
local fair = ARGV[8] == '1'
local routes = {}
local at = 12
for t = 1, n do
  local base = 5 + (t - 1) * 4
  local id, created, pairs = ARGV[at], ARGV[at + 1], tonumber(ARGV[at + 2])
  if fair and (held > 0 or released >= window) then
    redis.call('ZADD', KEYS[4], created, id)
    held = held + 1
    routes[t] = 'h'
  else
    redis.call('ZADD', KEYS[3], created, id)
    released = released + 1
    routes[t] = 'd'
  end
  local hash = KEYS[base + 1]
  redis.call('HSET', hash, 'status', PENDING, 'seq', 1, unpack(ARGV, at + 3, at + 2 + 2 * pairs))
  redis.call('EXPIRE', hash, ttl)
  redis.call('PUBLISH', KEYS[base + 2], cjson.encode({seq = 1, status = PENDING}))
  for i = base + 3, base + 4 do
    redis.call('ZADD', KEYS[i], created, id)
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. oldest)
    redis.call('EXPIRE', KEYS[i], ttl)
  end
  at = at + 3 + 2 * pairs
end
if held > 0 then
  redis.call('SADD', KEYS[5], ARGV[11])
  redis.call('EXPIRE', KEYS[5], ttl)
end
redis.call('EXPIRE', KEYS[3], ttl)
redis.call('EXPIRE', KEYS[4], ttl)
return {'ok', take[2], table.concat(routes), tostring(rate), tostring(burst)}
