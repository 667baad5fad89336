-- KEYS[1] the verification. ARGV: service, now, cooldown ms, max sends,
-- ttl ms, retention ms, then pairs per secret: secret id, new code digest.
local now = tonumber(ARGV[2])
local status = visible(KEYS[1], ARGV[1], now)
if not status then return {'missing'} end
if status ~= 'pending' then return answer('finished', KEYS[1]) end
local f = redis.call('HMGET', KEYS[1], 'k', 'n', 'r')
if tonumber(f[2]) >= tonumber(ARGV[4]) then return answer('max_sends', KEYS[1]) end
if now < tonumber(f[3]) then return answer('too_soon', KEYS[1]) end
local digest = nil
for i = 7, #ARGV, 2 do
  if ARGV[i] == f[1] then digest = ARGV[i + 1] end
end
-- The secret it was made with is gone: it can never be checked again.
if not digest then return {'missing'} end
local ttl = tonumber(ARGV[5])
redis.call('HSET', KEYS[1], 'd', digest, 'r', now + tonumber(ARGV[3]), 'e', now + ttl)
redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('PEXPIRE', KEYS[1], ttl + tonumber(ARGV[6]))
return answer('resent', KEYS[1])
