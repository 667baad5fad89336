-- KEYS[1]: a shard's outbox stream. ARGV: group, consumer, entry id.
-- Resets the entry's idle time if `consumer` still holds it, and never
-- takes it back from another consumer (a takeover) or brings back a
-- finished one; 1 if it was kept.
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #pending == 0 or pending[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
