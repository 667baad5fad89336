-- KEYS[1] the verification. ARGV: service, now, then one triple per
-- configured secret: secret id, code digest, binding digest ('' if none).
local status = visible(KEYS[1], ARGV[1], tonumber(ARGV[2]))
if not status then return {'missing'} end
if status ~= 'pending' then return answer('finished', KEYS[1]) end
local f = redis.call('HMGET', KEYS[1], 'k', 'd', 'b')
local right = false
for i = 3, #ARGV, 3 do
  if ARGV[i] == f[1] then
    local code = same(ARGV[i + 1], f[2])
    local binding = same(ARGV[i + 2], f[3])
    right = code and binding
  end
end
if right then
  redis.call('HSET', KEYS[1], 's', 'approved')
  return answer('approved', KEYS[1])
end
if redis.call('HINCRBY', KEYS[1], 'a', -1) <= 0 then
  redis.call('HSET', KEYS[1], 's', 'failed', 'a', 0)
end
return answer('wrong', KEYS[1])
