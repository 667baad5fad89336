-- KEYS[1] the verification, KEYS[2] the shard's outbox stream, then the
-- slot's events keys (`common.lua`). ARGV:
-- service, now, base cooldown ms, max sends, ttl ms, retention ms, longest
-- cooldown ms, shard cap, sealed code ('' sends nothing: a test number),
-- code key id, channel, then pairs per secret: secret id, new code digest.
-- The cooldown doubles with every send and is per channel (ro keeps the
-- other channel's once the verification switched); the new code and its
-- send are stored in one step (the twin of rules::resend).
local now = tonumber(ARGV[2])
local status = visible(KEYS[1], ARGV[1], now)
if not status then return {'missing'} end
if status ~= 'pending' then return answer('finished', KEYS[1]) end
local f = redis.call('HMGET', KEYS[1], 'k', 'n', 'r', 'ch', 'ro', 'c')
local channel, current = ARGV[11], f[4] or 'sms'
if tonumber(f[2]) >= tonumber(ARGV[4]) then return answer('max_sends', KEYS[1]) end
local due = tonumber(f[3])
if channel ~= current then due = tonumber(f[5]) or tonumber(f[6]) end
if now < due then return answer('too_soon', KEYS[1]) end
local digest = nil
for i = 12, #ARGV, 2 do
  if ARGV[i] == f[1] then digest = ARGV[i + 1] end
end
-- The secret it was made with is gone: it can never be checked again.
if not digest then return {'missing'} end
local sends = ARGV[9] ~= ''
if sends and redis.call('XLEN', KEYS[2]) >= tonumber(ARGV[8]) then return {'full'} end
local ttl = tonumber(ARGV[5])
local sent = redis.call('HINCRBY', KEYS[1], 'n', 1)
if channel ~= current then redis.call('HSET', KEYS[1], 'ro', f[3], 'ch', channel) end
local cooldown = math.min(tonumber(ARGV[3]) * 2 ^ (sent - 1), tonumber(ARGV[7]))
redis.call('HSET', KEYS[1], 'd', digest, 'r', now + cooldown, 'e', now + ttl, 'ds', 'queued', 'dc', '', 'dm', '')
redis.call('HDEL', KEYS[1], 'rf', 'rw', 'wc', 'wk', 'wn', 'fs')
redis.call('PEXPIRE', KEYS[1], ttl + tonumber(ARGV[6]))
schedule_expiry(KEYS[1])
local id = string.match(KEYS[1], ':v:(.+)$')
if sends then enqueue(KEYS[2], id, ARGV[1], sent, ARGV[9], ARGV[10], now) end
return answer('resent', KEYS[1])
