-- KEYS[1] the shard's outbox stream, KEYS[2] the verification, KEYS[3] the
-- shard's dead-letter stream. ARGV: group, entry id, send number, outcome
-- ('sent' | 'failed' | 'skipped'), carrier, message id, dead ('1'), now.
-- Acknowledges and removes the entry and, if it is still the verification's
-- latest send, records the outcome; a failed send is taken back (one send
-- fewer, no cooldown) so the user can ask again at once.
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
local removed = redis.call('XDEL', KEYS[1], ARGV[2])
if removed == 0 then return 0 end
local f = redis.call('HMGET', KEYS[2], 'n', 's')
local latest = f[1] and tonumber(f[1]) == tonumber(ARGV[3]) and f[2] == 'pending'
if latest and ARGV[4] == 'sent' then
  redis.call('HSET', KEYS[2], 'ds', 'sent', 'dc', ARGV[5], 'dm', ARGV[6], 'da', ARGV[8])
elseif latest and ARGV[4] == 'failed' then
  redis.call('HSET', KEYS[2], 'ds', 'failed', 'n', math.max(tonumber(f[1]) - 1, 0), 'r', ARGV[8])
end
if ARGV[7] == '1' then
  local id = string.match(KEYS[2], ':v:(.+)$')
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', 10000, '*', 'v', id, 'n', ARGV[3], 'failed_at', ARGV[8])
  redis.call('PEXPIRE', KEYS[3], 7 * 86400000)
end
return 1
