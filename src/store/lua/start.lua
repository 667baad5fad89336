-- KEYS[1] the number's index, KEYS[2] the new verification, KEYS[3] the
-- shard's outbox stream. ARGV: verification key prefix, now, binding
-- digest, new id, index ttl ms, record ttl ms, shard cap, service, sealed
-- code, code key id, then the new record's field/value pairs.
-- Storing the verification and queueing its first send are one step.
local now = tonumber(ARGV[2])
if redis.call('XLEN', KEYS[3]) >= tonumber(ARGV[7]) then return {'full', ''} end
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
redis.call('HSET', KEYS[2], unpack(ARGV, 11))
redis.call('PEXPIRE', KEYS[2], ARGV[6])
redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5])
enqueue(KEYS[3], ARGV[4], ARGV[8], 1, ARGV[9], ARGV[10], now)
return {'created', replaced}
