-- Shared by every otpd script (prepended by store/redis.rs).
-- A verification is a hash: sv service, s status, mt masked number, ch channel,
-- st sealed number, lc locale, c created, e expires, r resend after
-- (milliseconds) on the channel in use, ro on the other ('' until the
-- verification switched channels), n sends, a attempts left, k secret id, d code digest,
-- b binding digest ('' when unbound), nk the number key, cc the country
-- calling code, ah the Android app hash ('' when none), ds/dc/dm/da the
-- latest send's status, carrier, message id and acceptance time, rf/rw the
-- carrier it was re-routed from and why ('' when it was not), wc/wk/wn the
-- sealed code, its key and the fallback channel ('' none) while the send
-- is watched, fs the fallback steps run for the current code, co its country (ISO 3166-1 alpha-2), en the number of events
-- it has queued (only when its service has events), dn the name its start
-- gave the service (only when given). "now" always comes
-- from the caller's clock; key TTLs are housekeeping only.
--
-- A script that changes a verification declares, after its own keys, the
-- events queue (`…:e:<service>`) and expiry schedule (`…:x:<service>`) of
-- every service with events in the slot: `emit` finds the verification's
-- own among them.

-- The declared key ending in `suffix`, or nil.
local function declared_ending(suffix)
  for _, key in ipairs(KEYS) do
    if string.sub(key, -#suffix) == suffix then return key end
  end
  return nil
end

-- Queues the lifecycle event `kind` of the verification at `key` (its
-- fields as they are now) if its service has events; `reason` or ''.
-- True if it did.
local function emit(key, kind, now, reason)
  local f = redis.call('HMGET', key, 'sv', 'mt', 'ch', 'dc', 'co')
  local queue = f[1] and declared_ending(':e:' .. f[1])
  if not queue then return false end
  local id = string.match(key, ':v:(.+)$')
  local n = redis.call('HINCRBY', key, 'en', 1)
  redis.call('XADD', queue, '*', 'i', id .. '.' .. n, 't', kind, 'v', id, 'sv', f[1], 'mt', f[2],
    'ch', f[3] or 'sms', 'dc', f[4] or '', 'co', f[5] or '', 'at', now, 'x', reason)
  redis.call('PEXPIRE', queue, 7 * 86400000)
  return true
end

-- Schedules the `expired` event of the verification at `key` for its
-- expiry, if its service has events.
local function schedule_expiry(key)
  local f = redis.call('HMGET', key, 'sv', 'e')
  local schedule = f[1] and declared_ending(':x:' .. f[1])
  if not schedule then return end
  redis.call('ZADD', schedule, f[2], string.match(key, ':v:(.+)$'))
  redis.call('PEXPIRE', schedule, 7 * 86400000)
end

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

-- The sends and approvals of a conversion state (a hash of per-bucket
-- counts, 's<bucket>' and 'a<bucket>') in the buckets after `oldest`;
-- older buckets are dropped.
local function conversion(state, oldest)
  local fields = redis.call('HGETALL', state)
  local counts, stale = {s = 0, a = 0}, {}
  for i = 1, #fields, 2 do
    local kind, bucket = string.sub(fields[i], 1, 1), tonumber(string.sub(fields[i], 2))
    if bucket > oldest then
      counts[kind] = counts[kind] + tonumber(fields[i + 1])
    else
      stale[#stale + 1] = fields[i]
    end
  end
  if #stale > 0 then redis.call('HDEL', state, unpack(stale)) end
  return counts.s, counts.a
end

-- Adds `count` to a conversion state's `kind` ('s' sends, 'a' approvals) in
-- the bucket of `now`; c is the item's conversion window ms.
local function convert(state, kind, count, now, c)
  local width = math.max(math.floor(c / 12), 1)
  redis.call('HINCRBY', state, kind .. math.floor(now / width), count)
  redis.call('PEXPIRE', state, c + width)
end

-- Decides a group of limits (one slot) and records them only if no
-- enforced item refuses. Item j has its state in KEYS[2j - 1] and its block
-- in KEYS[2j]; its values start at ARGV[first], seven each: kind ('r' GCRA
-- rate | 'q' quota | 'c' conversion), cost, monitor ('1'), block ms (0:
-- none), then a, b, c (rate: interval ms, burst, -; quota: cap, window end
-- ms, -; conversion: min sends, min approvals per thousand sends, window
-- ms). Returns {allowed, denied ms (-1 if not), remaining, used before, ...}.
local function limits(now, first)
  local out = {1}
  local writes = {}
  for i = first, #ARGV, 7 do
    local item = (i - first) / 7
    local state, block_key = KEYS[2 * item + 1], KEYS[2 * item + 2]
    local kind = ARGV[i]
    local cost, monitor, block = tonumber(ARGV[i + 1]), ARGV[i + 2] == '1', tonumber(ARGV[i + 3])
    local a, b, c = tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5]), tonumber(ARGV[i + 6])
    local denied, remaining, before = -1, 0, 0
    local blocked = tonumber(redis.call('GET', block_key))
    local already = blocked and blocked > now
    if already then
      denied = blocked - now
    elseif kind == 'r' then
      local tat = math.max(tonumber(redis.call('GET', state)) or now, now)
      local ahead = tat + a * cost - now
      if ahead > a * b then
        denied = ahead - a * b
      else
        remaining = math.floor((a * b - ahead) / a)
        writes[#writes + 1] = {'r', state, now + ahead, ahead}
      end
    elseif kind == 'q' then
      before = tonumber(redis.call('GET', state)) or 0
      if before + cost > a then
        denied = b - now
      else
        remaining = a - before - cost
        writes[#writes + 1] = {'q', state, cost, b - now}
      end
    else
      local width = math.max(math.floor(c / 12), 1)
      local sends, approvals = conversion(state, math.floor(now / width) - 12)
      before = sends
      if sends >= a and approvals * 1000 < b * sends then
        denied = c
      else
        writes[#writes + 1] = {'c', state, cost, c}
      end
    end
    -- A refused send to a destination still counts towards its conversion:
    -- while pumping goes on, the destination stays blocked.
    if denied >= 0 and kind == 'c' and not monitor then
      convert(state, 's', cost, now, c)
    end
    if denied >= 0 and not monitor then
      out[1] = 0
      if block > 0 and not already then
        redis.call('SET', block_key, now + block, 'PX', block)
        denied = block
      end
    end
    out[#out + 1] = denied
    out[#out + 1] = remaining
    out[#out + 1] = before
  end
  if out[1] == 1 then
    for _, w in ipairs(writes) do
      if w[1] == 'r' then
        redis.call('SET', w[2], w[3], 'PX', w[4])
      elseif w[1] == 'q' then
        redis.call('INCRBY', w[2], w[3])
        redis.call('PEXPIRE', w[2], math.max(w[4], 1))
      else
        convert(w[2], 's', w[3], now, w[4])
      end
    end
  end
  return out
end

-- Gives back what `limits` recorded for the same items.
local function refund(now, first)
  for i = first, #ARGV, 7 do
    local state = KEYS[2 * ((i - first) / 7) + 1]
    local kind, cost, a = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 4])
    if kind == 'c' then
      convert(state, 's', -cost, now, tonumber(ARGV[i + 6]))
    else
      local current = tonumber(redis.call('GET', state))
      if current then
        local back = kind == 'r' and a * cost or cost
        redis.call('SET', state, current - back, 'KEEPTTL')
      end
    end
  end
  return {}
end

-- Counts an approval for the conversion items.
local function approve(now, first)
  for i = first, #ARGV, 7 do
    if ARGV[i] == 'c' then
      convert(KEYS[2 * ((i - first) / 7) + 1], 'a', 1, now, tonumber(ARGV[i + 6]))
    end
  end
  return {}
end

-- Queues one send on the shard's stream (a re-route names the carrier it
-- follows, why, and whether it switched channels: '1' for a fallback). The code is sealed (AES-GCM) by the caller: it is
-- never in clear at rest. The stream lives while sends arrive (a day after
-- the last one).
local function enqueue(stream, id, service, number, sealed_code, key_id, now, from, reason, switched)
  if from then
    redis.call('XADD', stream, '*', 'v', id, 'sv', service, 'n', number, 'c', sealed_code, 'k', key_id, 'q', now, 'rf', from, 'rw', reason, 'rs', switched)
  else
    redis.call('XADD', stream, '*', 'v', id, 'sv', service, 'n', number, 'c', sealed_code, 'k', key_id, 'q', now)
  end
  redis.call('PEXPIRE', stream, 86400000)
end

-- Queues send n of the verification at `key` once more, for the carrier
-- after the one that accepted it or on the fallback channel kept in wn, if
-- it is still watched (in the shard's `watched` set) and still the latest
-- send of a pending, living verification that was not re-routed before
-- (a fallback step: counted in fs, once per watch) (the twin of rules::reroute); a watch that ended with a fallback channel
-- is a fallback, not a missing receipt. 1 if it did.
local function reroute(key, stream, due, n, reason, now)
  local id = string.match(key, ':v:(.+)$')
  if redis.call('ZREM', due, id .. '.' .. n) == 0 then return 0 end
  local f = redis.call('HMGET', key, 's', 'n', 'e', 'ds', 'dc', 'rf', 'wc', 'wk', 'sv', 'wn', 'ch', 'r')
  local channel = f[10] or ''
  -- A fallback step runs once per watch; a carrier re-route once per code.
  local eligible = f[1] == 'pending' and tonumber(f[2]) == tonumber(n) and tonumber(f[3]) > now
    and (f[4] == 'sent' or f[4] == 'undelivered' or f[4] == 'delivered')
    and (channel ~= '' or not f[6] or f[6] == '') and f[7]
  if not eligible then return 0 end
  if channel ~= '' then redis.call('HINCRBY', key, 'fs', 1) end
  if channel ~= '' and reason == 'no_receipt' then reason = 'fallback' end
  local switched = channel ~= '' and channel ~= (f[11] or 'sms')
  if switched then
    redis.call('HSET', key, 'ch', channel, 'ro', f[12])
  end
  redis.call('HSET', key, 'ds', 'queued', 'dc', '', 'dm', '', 'da', '', 'rf', f[5], 'rw', reason)
  redis.call('HDEL', key, 'wc', 'wk', 'wn')
  if switched then
    emit(key, 'fallback', now, reason == 'undelivered' and 'undelivered' or 'timeout')
  end
  enqueue(stream, id, f[9], n, f[7], f[8], now, f[5], reason, switched and '1' or '0')
  return 1
end
