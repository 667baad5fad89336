-- KEYS: each item's state key, then its block key (one slot). ARGV: now,
-- action ('take' | 'refund'), then the items (see limits).
if ARGV[2] == 'refund' then return refund(3) end
return limits(tonumber(ARGV[1]), 3)
