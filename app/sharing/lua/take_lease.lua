-- take_lease: a lease (an open stream, a long-poll, a webhook delivery) is taken only while
-- its set holds fewer than the limit (the owner's override, or the default); expired ones are
-- dropped first. Time is Redis's own.
-- KEYS: [1] the lease set, [2] the owner's limits hash
-- ARGV: [1] member, [2] lease seconds, [3] default limit, [4] the limits hash field
--       overriding it ('' for none)
-- Returns {taken (1|0), held, limit}.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local limit = tonumber(ARGV[3])
if ARGV[4] ~= '' then limit = tonumber(redis.call('HGET', KEYS[2], ARGV[4]) or limit) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
if limit >= 0 and held >= limit then return {0, held, tostring(limit)} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 1)
return {1, held + 1, tostring(limit)}
