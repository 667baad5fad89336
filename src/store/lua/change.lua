-- KEYS[1] the verification. ARGV: service, now, action: 'cancel' makes it
-- canceled; 'unsend' takes back the last send and its cooldown.
local now = tonumber(ARGV[2])
local status = visible(KEYS[1], ARGV[1], now)
if not status then return {'missing'} end
if status ~= 'pending' then return answer('finished', KEYS[1]) end
if ARGV[3] == 'cancel' then
  redis.call('HSET', KEYS[1], 's', 'canceled')
else
  local sends = tonumber(redis.call('HGET', KEYS[1], 'n'))
  redis.call('HSET', KEYS[1], 'n', math.max(sends - 1, 0), 'r', now)
end
return answer('changed', KEYS[1])
