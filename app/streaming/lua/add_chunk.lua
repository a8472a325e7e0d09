-- add_chunk: one chunk of a streaming model's output, appended to the task's chunk list (JSON
-- texts, in order) and published on the task's channel with its number, only while the task
-- runs and only if it is the next one: a retried attempt that yields again the chunks an
-- earlier attempt wrote appends nothing until it goes beyond them.
-- KEYS: [1] chunk list, [2] task hash, [3] its change channel
-- ARGV: [1] chunk number (from 1), [2] JSON text, [3] ttl
-- Returns 1 written, 0 written before (by an earlier attempt), -1 the task does not run.
--- @include "../../tasks/lua/includes/states.lua"
if redis.call('HGET', KEYS[2], 'status') ~= RUNNING then return -1 end
local number = tonumber(ARGV[1])
local have = redis.call('LLEN', KEYS[1])
if have >= number then return 0 end
if have ~= number - 1 then return -1 end
redis.call('RPUSH', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('HSET', KEYS[2], 'chunks', number)
redis.call('PUBLISH', KEYS[3], '{"chunk":' .. number .. ',"data":' .. ARGV[2] .. '}')
return 1
