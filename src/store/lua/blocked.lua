-- KEYS[1] the service's events queue. ARGV: the event's field/value
-- pairs. Queues the event of a refused start, which changes no
-- verification.
redis.call('XADD', KEYS[1], '*', unpack(ARGV))
redis.call('PEXPIRE', KEYS[1], 7 * 86400000)
return 1
