-- KEYS[1] the verification, KEYS[2] its number's failures (n count, l
-- last, w wait until; the caller names it from the record's nk, read
-- beforehand), then the slot's events keys (`common.lua`). ARGV: service, now, the number key it was named from (not
-- the record's: missing), then the number's
-- failure policy: max, free, delay ms, max delay ms, decay ms; then one
-- triple per configured secret: secret id, code digest, binding digest
-- ('' if none). Both keys share the slot, so the gate and the check are
-- one atomic step.
local now = tonumber(ARGV[2])
local status = visible(KEYS[1], ARGV[1], now)
if not status then return {'missing'} end
local f = redis.call('HMGET', KEYS[1], 'k', 'd', 'b', 'nk')
if f[4] ~= ARGV[3] then return {'missing'} end
if status ~= 'pending' then return answer('finished', KEYS[1]) end
local failures_key = KEYS[2]
local max, free, delay = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local max_delay, decay = tonumber(ARGV[7]), tonumber(ARGV[8])
local g = redis.call('HMGET', failures_key, 'n', 'l', 'w')
local failures, last, wait = tonumber(g[1]) or 0, tonumber(g[2]) or 0, tonumber(g[3]) or 0
if failures > 0 and now >= last + decay then failures, wait = 0, 0 end
if failures >= max then return {'throttled', last + decay - now} end
if wait > now then return {'throttled', wait - now} end
local right = false
for i = 9, #ARGV, 3 do
  if ARGV[i] == f[1] then
    local code = same(ARGV[i + 1], f[2])
    local binding = same(ARGV[i + 2], f[3])
    right = code and binding
  end
end
if right then
  redis.call('HSET', KEYS[1], 's', 'approved')
  emit(KEYS[1], 'approved', now, '')
  redis.call('DEL', failures_key)
  return answer('approved', KEYS[1])
end
failures = failures + 1
local pause = 0
if failures > free then pause = math.min(delay * 2 ^ (failures - free - 1), max_delay) end
redis.call('HSET', failures_key, 'n', failures, 'l', now, 'w', now + pause)
redis.call('PEXPIRE', failures_key, decay)
if redis.call('HINCRBY', KEYS[1], 'a', -1) <= 0 then
  redis.call('HSET', KEYS[1], 's', 'failed', 'a', 0)
  emit(KEYS[1], 'failed', now, '')
end
return answer('wrong', KEYS[1])
