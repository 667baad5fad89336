-- KEYS[1] the events queue's lease, KEYS[2] the service's expiry schedule,
-- then the verifications found due, then the service's events queue.
-- ARGV: holder, now. For the lease holder only: queues `expired` for each
-- verification still pending and expired, and takes every finished or
-- vanished one off the schedule (a resent one stays, due later); how many
-- expired, or -1 if the lease is not held.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local now = tonumber(ARGV[2])
local expired = 0
for i = 3, #KEYS do
  local id = string.match(KEYS[i], ':v:(.+)$')
  if id then
    local f = redis.call('HMGET', KEYS[i], 's', 'e')
    if f[1] ~= 'pending' then
      redis.call('ZREM', KEYS[2], id)
    elseif tonumber(f[2]) <= now and redis.call('ZREM', KEYS[2], id) == 1 then
      emit(KEYS[i], 'expired', now, '')
      expired = expired + 1
    end
  end
end
return expired
