-- release_room: how many more of an owner's tasks their window has room for now.
-- KEYS: [1] the owner's released set
-- ARGV: [1] window
-- Returns the room (0 or more).
local room = tonumber(ARGV[1]) - redis.call('ZCARD', KEYS[1])
if room < 0 then return 0 end
return room
