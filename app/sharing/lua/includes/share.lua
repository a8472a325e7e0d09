-- Taking a task out of its owner's fair share when it ends, and back in when replayed.
--- @include "fair_keys.lua"
-- Returns how many tasks the owner still has held.
local function leave_share(prefix, key, task_id)
  local model = redis.call('HGET', key, 'model')
  local owner = redis.call('HGET', key, 'owner')
  if not model or not owner then return 0 end
  redis.call('ZREM', fair_key(prefix, 'released', model, owner), task_id)
  local held = fair_key(prefix, 'held', model, owner)
  redis.call('ZREM', held, task_id)
  local left = redis.call('ZCARD', held)
  if left == 0 then redis.call('SREM', holders_key(prefix, model), owner) end
  return left
end
local function join_share(prefix, key, task_id)
  local model = redis.call('HGET', key, 'model')
  local owner = redis.call('HGET', key, 'owner')
  if not model or not owner then return end
  local created = redis.call('HGET', key, 'created_at') or '0'
  redis.call('ZADD', fair_key(prefix, 'released', model, owner), created, task_id)
end
