-- KEYS[1] the events queue's lease, KEYS[2] the queue, KEYS[3] its
-- service's expiry schedule in the slot. ARGV: holder, lease ms, max, now.
-- Takes or renews the lease; if held, answers {1, the first `max` events,
-- the verifications whose expiry has come}; {0} if another replica holds it.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return {0} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local events = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', ARGV[3])
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[4], 'LIMIT', 0, ARGV[3])
return {1, events, due}
