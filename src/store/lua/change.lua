-- KEYS[1] the verification. ARGV: service, now. Cancels it if pending.
local now = tonumber(ARGV[2])
local status = visible(KEYS[1], ARGV[1], now)
if not status then return {'missing'} end
if status ~= 'pending' then return answer('finished', KEYS[1]) end
redis.call('HSET', KEYS[1], 's', 'canceled')
return answer('changed', KEYS[1])
