-- transition: one state write of a task, checked against the transitions
-- app/core/lifecycle.py allows, published on the task's channel with its new sequence number.
-- A write that ends the task takes it out of its owner's fair share; an admin's replay ('j')
-- puts it back.
-- KEYS: [1] task hash, [2] its change channel
-- ARGV: [1] ttl, [2] target status, [3] allowed sources (space-padded), [4] now, [5] flags,
--       [6] count of published pairs, [7] key prefix, [8] task id, then field pairs (the
--       published ones first)
-- Flags: c  a cancel requested while the task ran turns this write into `cancelled`
--        d  a pending task never started and past its deadline becomes `expired` instead; a
--           write whose target is `expired` happens only then
--        j  back into its owner's fair share (a final task reopened)
-- Returns {written (1|0), status, seq, callback URL of a pending delivery, tasks its owner
--   still has held (when this write made it final)}.
--- @include "includes/states.lua"
--- @include "../../sharing/lua/includes/share.lua"
local key = KEYS[1]
-- The callback of a final task whose delivery is not done yet (a redelivered task hands it on
-- again, in case the replica that finished it died before queueing the delivery).
local function pending_hook(status)
  if FINAL[status] and redis.call('HGET', key, 'webhook_status') == 'pending' then
    return redis.call('HGET', key, 'webhook_url') or ''
  end
  return ''
end
local current = redis.call('HGET', key, 'status') or NO_RECORD
local seq = tonumber(redis.call('HGET', key, 'seq') or '0')
if not string.find(ARGV[3], ' ' .. current .. ' ', 1, true) then
  return {0, current, seq, pending_hook(current), 0}
end
local status = ARGV[2]
local now = ARGV[4]
local flags = ARGV[5]
local redirect = nil
if string.find(flags, 'c', 1, true) and redis.call('HGET', key, 'cancel_requested') == '1' then
  redirect = CANCELLED
elseif string.find(flags, 'd', 1, true) then
  local deadline = tonumber(redis.call('HGET', key, 'deadline') or '')
  local attempts = tonumber(redis.call('HGET', key, 'attempts') or '0')
  if current == PENDING and attempts == 0 and deadline and tonumber(now) >= deadline then
    redirect = EXPIRED
  elseif status == EXPIRED then
    return {0, current, seq, '', 0}
  end
end
seq = seq + 1
local event = {}
if redirect then
  status = redirect
  event['finished_at'] = now
  if redirect == EXPIRED then
    event['error'] = 'not started before its deadline'
    event['error_code'] = ERROR_DEADLINE
  end
  for name, value in pairs(event) do redis.call('HSET', key, name, value) end
else
  for i = 9, 8 + 2 * tonumber(ARGV[6]), 2 do event[ARGV[i]] = ARGV[i + 1] end
  if #ARGV >= 9 then redis.call('HSET', key, unpack(ARGV, 9)) end
end
local held = 0
if FINAL[status] and not FINAL[current] then
  held = leave_share(ARGV[7], key, ARGV[8])
elseif FINAL[current] and not FINAL[status] and string.find(flags, 'j', 1, true) then
  join_share(ARGV[7], key, ARGV[8])
end
redis.call('HSET', key, 'status', status, 'seq', seq)
redis.call('EXPIRE', key, ARGV[1])
event['status'] = status
event['seq'] = seq
redis.call('PUBLISH', KEYS[2], cjson.encode(event))
return {1, status, seq, pending_hook(status), held}
