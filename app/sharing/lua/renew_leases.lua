-- renew_leases: push back the expiry of leases still held (a lapsed one is not revived).
-- KEYS: [1] a lease set
-- ARGV: [1] lease seconds, then the members to renew
-- Returns 1.
local clock = redis.call('TIME')
local until_ = tonumber(clock[1]) + tonumber(clock[2]) / 1000000 + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', until_, ARGV[i]) end
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1])) + 1)
return 1
