-- KEYS[1] the number's index, KEYS[2] the new verification, KEYS[3] the
-- shard's outbox stream, KEYS[4] the verification the index pointed at when
-- the caller read it (absent if none), then the slot's events keys
-- (`common.lua`). ARGV: that verification's id ('' if
-- none), now, binding digest, new id, index ttl ms, record ttl ms,
-- service, shard cap, sealed code ('' sends nothing: a test number), code
-- key id, then the new record's field/value pairs. Storing the
-- verification and queueing its first send are one step; if the index
-- moved since the caller read it, nothing changes ('moved') and the caller
-- reads it again.
local now = tonumber(ARGV[2])
local sends = ARGV[9] ~= ''
local old = redis.call('GET', KEYS[1])
if (old or '') ~= ARGV[1] then return {'moved', ''} end
if sends and redis.call('XLEN', KEYS[3]) >= tonumber(ARGV[8]) then return {'full', ''} end
local replaced = ''
if old then
  local old_key = KEYS[4]
  local f = redis.call('HMGET', old_key, 's', 'e', 'b')
  if f[1] == 'pending' and tonumber(f[2]) > now then
    if same(f[3], ARGV[3]) then return {'pending', old} end
    redis.call('HSET', old_key, 's', 'canceled')
    emit(old_key, 'canceled', now, 'replaced')
    replaced = old
  end
end
redis.call('HSET', KEYS[2], unpack(ARGV, 11))
redis.call('PEXPIRE', KEYS[2], ARGV[6])
if emit(KEYS[2], 'started', now, '') then schedule_expiry(KEYS[2]) end
redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5])
if sends then enqueue(KEYS[3], ARGV[4], ARGV[7], 1, ARGV[9], ARGV[10], now) end
return {'created', replaced}
