-- KEYS[1] the idempotency record: f fingerprint, u locked until, a answer.
-- ARGV: fingerprint, now, lock ms. Taken while answered or locked.
local now = tonumber(ARGV[2])
local f = redis.call('HMGET', KEYS[1], 'f', 'u', 'a')
if f[1] and (f[3] or tonumber(f[2]) > now) then
  return {f[1], f[3]}
end
redis.call('HSET', KEYS[1], 'f', ARGV[1], 'u', now + tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {}
