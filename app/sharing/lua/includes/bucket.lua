-- A token bucket on Redis's clock: holds up to `burst` tokens, refills at `rate` per second;
-- a rate below 0 means no limit.
-- take_tokens(key, rate, burst, cost, now) -> {allowed (1|0), tokens left, seconds to wait}
-- Numbers go back as strings: Redis truncates Lua numbers to integers.
local function take_tokens(key, rate, burst, cost, now)
  if rate < 0 then return {1, '-1', '0'} end
  local state = redis.call('HMGET', key, 't', 'ts')
  local tokens = tonumber(state[1]) or burst
  local stamp = tonumber(state[2]) or now
  if rate > 0 then tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate) end
  local allowed = 1
  local wait = 0
  if tokens < cost then
    allowed = 0
    if rate > 0 then wait = (cost - tokens) / rate else wait = 3600 end
  else
    tokens = tokens - cost
  end
  redis.call('HSET', key, 't', tostring(tokens), 'ts', tostring(now))
  local ttl = 3600
  if rate > 0 then ttl = math.ceil(burst / rate) + 1 end
  redis.call('EXPIRE', key, ttl)
  return {allowed, string.format('%.3f', tokens), string.format('%.3f', wait)}
end
local function redis_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
