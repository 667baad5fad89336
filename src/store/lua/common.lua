-- Shared by every otpd script (prepended by store/redis.rs).
-- A verification is a hash: sv service, s status, mt masked number,
-- st sealed number, lc locale, c created, e expires, r resend after
-- (milliseconds), n sends, a attempts left, k secret id, d code digest,
-- b binding digest ('' when unbound). "now" always comes from the caller's
-- clock; key TTLs are housekeeping only.

-- Constant-time equality (SEC-12): the loop never exits early.
local function same(a, b)
  if #a ~= #b then return false end
  local diff = 0
  for i = 1, #a do
    diff = bit.bor(diff, bit.bxor(string.byte(a, i), string.byte(b, i)))
  end
  return diff == 0
end

-- The status of a verification that exists, is not expired and belongs to
-- the service; nil otherwise.
local function visible(key, service, now)
  local f = redis.call('HMGET', key, 'sv', 'e', 's')
  if not f[1] or f[1] ~= service or tonumber(f[2]) <= now then return nil end
  return f[3]
end

-- The outcome followed by the whole record, for the caller to decode.
local function answer(outcome, key)
  local record = redis.call('HGETALL', key)
  table.insert(record, 1, outcome)
  return record
end
