-- KEYS[1] any key of the group's slot (for routing). ARGV: key prefix
-- ('p:{T}:'), now, action ('take' | 'refund'), then the items (see limits).
if ARGV[3] == 'refund' then return refund(ARGV[1], 4) end
return limits(ARGV[1], tonumber(ARGV[2]), 4)
