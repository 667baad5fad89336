-- KEYS[1] the events queue's lease, KEYS[2] the queue, KEYS[3] its tries,
-- KEYS[4] the shard's dead-lettered events. ARGV: holder, entry, max
-- tries, now. Counts a failed try of the entry; the last one moves it to
-- the dead letters. Answers the tries so far, 0 once dead-lettered, -1 if
-- the lease is not held.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local tries = redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
redis.call('PEXPIRE', KEYS[3], 7 * 86400000)
if tries < tonumber(ARGV[3]) then return tries end
local entry = redis.call('XRANGE', KEYS[2], ARGV[2], ARGV[2])
if entry[1] then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', 10000, '*', 'failed_at', ARGV[4], unpack(entry[1][2]))
  redis.call('PEXPIRE', KEYS[4], 7 * 86400000)
end
redis.call('XDEL', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
return 0
