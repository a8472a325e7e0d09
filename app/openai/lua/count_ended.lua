-- count_ended: count a batch's tasks that ended, each once, whichever worker sees it first.
-- KEYS: [1] batch hash, [2] its set of open tasks
-- ARGV: pairs of (task id, 'completed' | 'failed')
-- Returns how many were counted now.
local counted = 0
for i = 1, #ARGV, 2 do
  if redis.call('SREM', KEYS[2], ARGV[i]) == 1 then
    redis.call('HINCRBY', KEYS[1], ARGV[i + 1], 1)
    counted = counted + 1
  end
end
return counted
