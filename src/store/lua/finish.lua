-- KEYS[1] the shard's outbox stream, KEYS[2] the verification, KEYS[3] the
-- shard's dead-letter stream, KEYS[4] the shard's watched sends (a sorted
-- set of '<id>.<send>' by the end of their watch), then the slot's events
-- keys (`common.lua`). ARGV: group, entry id,
-- send number, outcome ('sent' | 'failed' | 'skipped'), carrier, message
-- id, dead ('1'), now, watch until ('' for none), the fallback channel
-- the watch switches to ('' for the same channel's next carrier).
-- Acknowledges and removes the entry and, if it is still the verification's
-- latest send, records the outcome; a failed send is taken back (one send
-- fewer, no cooldown) so the user can ask again at once. A watched send
-- keeps its sealed code on the verification until its receipt comes or
-- its watch ends (REL-4).
local entry = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
local removed = redis.call('XDEL', KEYS[1], ARGV[2])
if removed == 0 then return 0 end
local f = redis.call('HMGET', KEYS[2], 'n', 's')
local latest = f[1] and tonumber(f[1]) == tonumber(ARGV[3]) and f[2] == 'pending'
local id = string.match(KEYS[2], ':v:(.+)$')
if latest and ARGV[4] == 'sent' then
  redis.call('HSET', KEYS[2], 'ds', 'sent', 'dc', ARGV[5], 'dm', ARGV[6], 'da', ARGV[8])
  emit(KEYS[2], 'sent', ARGV[8], '')
  if ARGV[9] ~= '' and entry[1] then
    local fields, sealed = entry[1][2], {}
    for i = 1, #fields, 2 do sealed[fields[i]] = fields[i + 1] end
    redis.call('HSET', KEYS[2], 'wc', sealed['c'], 'wk', sealed['k'], 'wn', ARGV[10])
    redis.call('ZADD', KEYS[4], ARGV[9], id .. '.' .. ARGV[3])
    redis.call('PEXPIRE', KEYS[4], 86400000)
  end
elseif latest and ARGV[4] == 'failed' then
  redis.call('HSET', KEYS[2], 'ds', 'failed', 'n', math.max(tonumber(f[1]) - 1, 0), 'r', ARGV[8])
  emit(KEYS[2], 'undelivered', ARGV[8], 'send_failed')
end
if ARGV[7] == '1' then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', 10000, '*', 'v', id, 'n', ARGV[3], 'failed_at', ARGV[8])
  redis.call('PEXPIRE', KEYS[3], 7 * 86400000)
end
return 1
