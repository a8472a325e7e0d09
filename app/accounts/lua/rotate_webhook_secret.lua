-- rotate_webhook_secret: a user's webhook secret is replaced; the current one becomes the
-- previous (deliveries are signed with both during the grace period).
-- KEYS: [1] the user's hash
-- ARGV: [1] the new secret, [2] now
-- Returns 1 rotated, 0 no such user.
if redis.call('HEXISTS', KEYS[1], 'password_hash') == 0 then return 0 end
local current = redis.call('HGET', KEYS[1], 'webhook_secret')
if current then redis.call('HSET', KEYS[1], 'webhook_previous', current) end
redis.call('HSET', KEYS[1], 'webhook_secret', ARGV[1], 'webhook_rotated_at', ARGV[2])
return 1
