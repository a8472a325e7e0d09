-- login_succeeded: a successful login clears its login-and-address scope and takes its own
-- attempt back from the address scope.
-- KEYS: [1] the login-and-address scope, [2] the address scope
-- Returns 1.
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 1 then
  if redis.call('HINCRBY', KEYS[2], 'n', -1) <= 0 then redis.call('DEL', KEYS[2]) end
end
return 1
