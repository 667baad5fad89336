-- KEYS: each item's state key, then its block key (one slot). ARGV: now,
-- action ('take' | 'refund' | 'approve'), then the items (see limits).
local now = tonumber(ARGV[1])
if ARGV[2] == 'refund' then return refund(now, 3) end
if ARGV[2] == 'approve' then return approve(now, 3) end
return limits(now, 3)
