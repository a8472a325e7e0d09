-- login_attempt: count a login attempt in each of its scopes, before its password is
-- checked, and say how long it must wait first: past a scope's threshold each attempt waits
-- twice as long as the last, up to a cap. Time is Redis's own, so gateways on machines with
-- skewed clocks agree.
-- KEYS: a scope's hash each
-- ARGV: [1] -, [2] window (seconds a scope is remembered without attempts), [3] base delay,
--       [4] max delay, then a threshold per key
-- Returns the seconds to wait (0: go ahead), as text.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local window = tonumber(ARGV[2])
local base = tonumber(ARGV[3])
local cap = tonumber(ARGV[4])
local wait = 0
for i, key in ipairs(KEYS) do
  local threshold = tonumber(ARGV[4 + i])
  local state = redis.call('HMGET', key, 'n', 'last')
  local n = tonumber(state[1]) or 0
  local last = tonumber(state[2]) or 0
  if n >= threshold then
    local delay = math.min(cap, base * 2 ^ (n - threshold))
    wait = math.max(wait, last + delay - now)
  end
end
for _, key in ipairs(KEYS) do
  redis.call('HINCRBY', key, 'n', 1)
  redis.call('HSET', key, 'last', tostring(now))
  redis.call('EXPIRE', key, window)
end
return string.format('%.3f', math.max(0, wait))
