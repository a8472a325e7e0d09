-- take_call: a synchronous call takes a token from its owner's submit bucket (their overrides
-- apply).
-- KEYS: [1] the owner's bucket, [2] the owner's limits hash
-- ARGV: [1] default rate, [2] default burst
-- Returns {taken (1|0), tokens left, seconds to wait, rate, burst}.
--- @include "includes/bucket.lua"
local limits = {}
local raw = redis.call('HGETALL', KEYS[2])
for i = 1, #raw, 2 do limits[raw[i]] = tonumber(raw[i + 1]) end
local rate = limits['submits_per_s'] or tonumber(ARGV[1])
local burst = limits['submit_burst'] or tonumber(ARGV[2])
local take = take_tokens(KEYS[1], rate, burst, 1, redis_now())
return {take[1], take[2], take[3], tostring(rate), tostring(burst)}
