-- KEYS[1] the verification, KEYS[2] the shard's outbox stream, KEYS[3] the
-- shard's watched sends, then the slot's events keys (`common.lua`). ARGV: send number, now.
-- A watched send whose watch ended: queued once more, for the next carrier
-- (no receipt came, REL-4) or on its fallback channel, if it still should
-- go; 1 if it was.
return reroute(KEYS[1], KEYS[2], KEYS[3], ARGV[1], 'no_receipt', tonumber(ARGV[2]))
