-- request_cancel: a pending task is cancelled at once (leaving its owner's fair share); a
-- running one is flagged, and its model's replicas told on the cancel channel.
-- KEYS: [1] task hash, [2] its change channel, [3] the model's cancel channel
-- ARGV: [1] ttl, [2] now, [3] task id, [4] key prefix
-- Returns {outcome, status, seq, callback URL}: outcome 1 cancelled now, 2 running and its
--   replica asked, 0 nothing to cancel (final, or no record).
--- @include "includes/states.lua"
--- @include "../../sharing/lua/includes/share.lua"
local key = KEYS[1]
local current = redis.call('HGET', key, 'status') or NO_RECORD
local seq = tonumber(redis.call('HGET', key, 'seq') or '0')
if current == PENDING then
  seq = seq + 1
  redis.call('HSET', key, 'status', CANCELLED, 'seq', seq, 'finished_at', ARGV[2])
  redis.call('EXPIRE', key, ARGV[1])
  redis.call('PUBLISH', KEYS[2],
    cjson.encode({seq = seq, status = CANCELLED, finished_at = ARGV[2]}))
  leave_share(ARGV[4], key, ARGV[3])
  return {1, CANCELLED, seq, redis.call('HGET', key, 'webhook_url') or ''}
elseif current == RUNNING then
  redis.call('HSET', key, 'cancel_requested', '1')
  redis.call('PUBLISH', KEYS[3], ARGV[3])
  return {2, current, seq, ''}
end
return {0, current, seq, ''}
