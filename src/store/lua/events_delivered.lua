-- KEYS[1] the events queue's lease, KEYS[2] the queue, KEYS[3] its tries.
-- ARGV: holder, then the delivered entries. Removes them if the lease is
-- still held (1); otherwise changes nothing (0) and the next holder
-- delivers them again.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('XDEL', KEYS[2], unpack(ARGV, 2))
redis.call('HDEL', KEYS[3], unpack(ARGV, 2))
return 1
