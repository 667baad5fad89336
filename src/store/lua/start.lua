-- KEYS[1] the number's index, KEYS[2] the new verification.
-- ARGV: verification key prefix, now, binding digest, new id, index ttl ms,
-- record ttl ms, then the new record's field/value pairs.
local now = tonumber(ARGV[2])
local replaced = ''
local old = redis.call('GET', KEYS[1])
if old then
  -- Same prefix and {tag}: the old verification lives in this slot too.
  local old_key = ARGV[1] .. old
  local f = redis.call('HMGET', old_key, 's', 'e', 'b')
  if f[1] == 'pending' and tonumber(f[2]) > now then
    if same(f[3], ARGV[3]) then return {'pending', old} end
    redis.call('HSET', old_key, 's', 'canceled')
    replaced = old
  end
end
redis.call('HSET', KEYS[2], unpack(ARGV, 7))
redis.call('PEXPIRE', KEYS[2], ARGV[6])
redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5])
return {'created', replaced}
