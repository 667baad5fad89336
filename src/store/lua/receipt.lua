-- KEYS[1] the verification, KEYS[2] the shard's outbox stream, KEYS[3] the
-- shard's watched sends, then the slot's events keys (`common.lua`). ARGV: send number, carrier, message id, status
-- ('delivered' | 'undelivered'), now.
-- Records a carrier's receipt if the verification still holds that send as
-- sent by that carrier under that message id (the twin of rules::receipt);
-- returns when the send was accepted, or -1 when nothing changed (a
-- duplicate, a superseded send, an unknown message). A delivered receipt
-- ends a watch for the receipt; an undelivered one queues the watched send
-- once more, for the next carrier (REL-4) or on its fallback channel.
local f = redis.call('HMGET', KEYS[1], 'n', 'ds', 'dc', 'dm', 'da', 's', 'r')
if not f[1] or tonumber(f[1]) ~= tonumber(ARGV[1]) or f[2] ~= 'sent'
    or f[3] ~= ARGV[2] or f[4] ~= ARGV[3] then
  return -1
end
local now = tonumber(ARGV[5])
redis.call('HSET', KEYS[1], 'ds', ARGV[4])
emit(KEYS[1], ARGV[4], now, ARGV[4] == 'undelivered' and 'receipt' or '')
if ARGV[4] == 'undelivered' then
  if f[6] == 'pending' and tonumber(f[7]) > now then
    redis.call('HSET', KEYS[1], 'r', ARGV[5])
  end
  reroute(KEYS[1], KEYS[2], KEYS[3], ARGV[1], 'undelivered', now)
elseif (redis.call('HGET', KEYS[1], 'wn') or '') == '' then
  -- A watch for the receipt ends; a fallback watch goes on (the code is
  -- not entered yet).
  local id = string.match(KEYS[1], ':v:(.+)$')
  if redis.call('ZREM', KEYS[3], id .. '.' .. ARGV[1]) == 1 then
    redis.call('HDEL', KEYS[1], 'wc', 'wk', 'wn')
  end
end
return tonumber(f[5]) or now
