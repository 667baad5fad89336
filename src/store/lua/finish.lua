-- KEYS[1] the shard's outbox stream, KEYS[2] the verification, KEYS[3] the
-- shard's dead-letter stream, KEYS[4] the shard's watched sends (a sorted
-- set of '<id>.<send>' by the end of their watch), then the slot's events
-- keys (`common.lua`). ARGV: group, entry id,
-- send number, outcome ('sent' | 'failed' | 'skipped'), carrier, message
-- id, dead ('1'), now, watch until ('' for none), the fallback channel
-- the watch (or, for a failed send, the switch) goes to ('' for the same
-- channel's next carrier; none), the carrier a failed send was tried on
-- last.
-- Acknowledges and removes the entry and, if it is still the verification's
-- latest send, records the outcome; a failed send is taken back (one send
-- fewer, no cooldown) so the user can ask again at once, unless a
-- fallback channel takes its code at once (a living verification on
-- another channel: once, as the send was not re-routed before). A watched send
-- keeps its sealed code on the verification until its receipt comes or
-- its watch ends (REL-4).
local entry = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
local removed = redis.call('XDEL', KEYS[1], ARGV[2])
if removed == 0 then return 0 end
local f = redis.call('HMGET', KEYS[2], 'n', 's', 'e', 'ch', 'r', 'rf', 'sv')
local latest = f[1] and tonumber(f[1]) == tonumber(ARGV[3]) and f[2] == 'pending'
local id = string.match(KEYS[2], ':v:(.+)$')
local now = tonumber(ARGV[8])
local switch = ARGV[4] == 'failed' and ARGV[10] ~= '' and ARGV[10] ~= (f[4] or 'sms')
  and latest and tonumber(f[3]) > now and (not f[6] or f[6] == '') and entry[1]
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
elseif switch then
  local fields, sealed = entry[1][2], {}
  for i = 1, #fields, 2 do sealed[fields[i]] = fields[i + 1] end
  emit(KEYS[2], 'undelivered', now, 'send_failed')
  redis.call('HSET', KEYS[2], 'ch', ARGV[10], 'ro', f[5], 'ds', 'queued', 'dc', '', 'dm', '', 'da', '',
    'rf', ARGV[11], 'rw', 'send_failed')
  redis.call('HINCRBY', KEYS[2], 'fs', 1)
  emit(KEYS[2], 'fallback', now, 'send_failed')
  enqueue(KEYS[1], id, f[7], ARGV[3], sealed['c'], sealed['k'], now, ARGV[11], 'send_failed', '1')
elseif latest and ARGV[4] == 'failed' then
  redis.call('HSET', KEYS[2], 'ds', 'failed', 'n', math.max(tonumber(f[1]) - 1, 0), 'r', ARGV[8])
  emit(KEYS[2], 'undelivered', ARGV[8], 'send_failed')
end
if ARGV[7] == '1' then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', 10000, '*', 'v', id, 'n', ARGV[3], 'failed_at', ARGV[8])
  redis.call('PEXPIRE', KEYS[3], 7 * 86400000)
end
return 1
