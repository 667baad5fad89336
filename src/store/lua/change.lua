-- KEYS[1] the verification, then the slot's events keys (`common.lua`).
-- ARGV: service, now. Cancels it if pending.
local now = tonumber(ARGV[2])
local status = visible(KEYS[1], ARGV[1], now)
if not status then return {'missing'} end
if status ~= 'pending' then return answer('finished', KEYS[1]) end
redis.call('HSET', KEYS[1], 's', 'canceled')
emit(KEYS[1], 'canceled', now, 'request')
return answer('changed', KEYS[1])
