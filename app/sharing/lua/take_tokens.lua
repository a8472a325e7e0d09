-- take_tokens: take `cost` tokens from one bucket.
-- KEYS: [1] the bucket
-- ARGV: [1] rate per second (below 0: no limit), [2] burst, [3] cost
-- Returns {allowed (1|0), tokens left, seconds to wait}.
--- @include "includes/bucket.lua"
return take_tokens(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), redis_now())
