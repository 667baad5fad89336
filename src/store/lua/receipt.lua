-- KEYS[1] the verification. ARGV: send number, carrier, message id,
-- status ('delivered' | 'undelivered'), now.
-- Records a carrier's receipt if the verification still holds that send as
-- sent by that carrier under that message id (the twin of rules::receipt);
-- returns when the send was accepted, or -1 when nothing changed (a
-- duplicate, a superseded send, an unknown message).
local f = redis.call('HMGET', KEYS[1], 'n', 'ds', 'dc', 'dm', 'da', 's', 'r')
if not f[1] or tonumber(f[1]) ~= tonumber(ARGV[1]) or f[2] ~= 'sent'
    or f[3] ~= ARGV[2] or f[4] ~= ARGV[3] then
  return -1
end
redis.call('HSET', KEYS[1], 'ds', ARGV[4])
if ARGV[4] == 'undelivered' and f[6] == 'pending' and tonumber(f[7]) > tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[1], 'r', ARGV[5])
end
return tonumber(f[5]) or tonumber(ARGV[5])
