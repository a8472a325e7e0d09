-- record_delivery: a webhook delivery's outcome goes into the task's record, only if the
-- record exists (an outcome must not resurrect an expired task).
-- KEYS: [1] task hash
-- ARGV: field pairs (`webhook_<name>`, value)
-- Returns 1 written, 0 no record.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
