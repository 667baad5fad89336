-- The wrk script of every bench scenario (bench/src/wrk.rs runs it):
-- builds each request, paces open-loop runs, writes the summary as JSON.
-- Settings come from the environment:
--   BENCH_KIND     start | check-right | check-wrong | mixed
--   BENCH_SERVICE  the otpd service;  BENCH_KEY  its API key
--   BENCH_THREADS  wrk's -t;  BENCH_OFFSET  first sequence number
--   BENCH_RATE     requests/s over all threads (0: closed loop)
--   BENCH_PREFIX   national prefix of started numbers ("70", "90" …)
--   BENCH_CHECKS   file of "<id> <code>" lines (checks)
--   BENCH_RESENDS  file of "<id> <code>" lines (mixed: resends)
--   BENCH_OUT      where done() writes the JSON summary
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_usec; } bench_timeval;
  int gettimeofday(bench_timeval *tv, void *tz);
]]

local kind = os.getenv("BENCH_KIND")
local service = os.getenv("BENCH_SERVICE")
local threads = tonumber(os.getenv("BENCH_THREADS"))
local offset = tonumber(os.getenv("BENCH_OFFSET") or "0")
local rate = tonumber(os.getenv("BENCH_RATE") or "0")
local prefix = os.getenv("BENCH_PREFIX") or "90"
local headers = {
  ["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or ""),
  ["Content-Type"] = "application/json",
}
local base = "/v1/services/" .. service .. "/verifications"

-- Thread numbers, handed out by the main state before the threads start.
local made = 0
local all_threads = {}
function setup(thread)
  thread:set("thread_index", made)
  made = made + 1
  all_threads[made] = thread
end

local function load(path)
  local pool = {}
  if not path or path == "" then return pool end
  for line in io.lines(path) do
    local id, code = line:match("^(%S+) (%d+)$")
    pool[#pool + 1] = { id = id, code = code }
  end
  return pool
end

local checks, resends = {}, {}
-- Requests this thread has built (a global: done() reads it).
sent = 0
local started_at, interval = 0, 0

local function now_ms()
  local tv = ffi.new("bench_timeval")
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000 + tonumber(tv.tv_usec) / 1000
end

function init(args)
  checks = load(os.getenv("BENCH_CHECKS"))
  resends = load(os.getenv("BENCH_RESENDS"))
  if rate > 0 then
    interval = 1000 * threads / rate
    started_at = now_ms()
  end
end

-- Open loop: each call reserves the next slot of this thread's schedule,
-- start + n * interval, however long earlier answers took. wrk calls
-- delay() before every request only if it is defined, so closed-loop runs
-- (BENCH_RATE 0) go without it.
if rate > 0 then
  local scheduled = 0
  function delay()
    local due = started_at + scheduled * interval
    scheduled = scheduled + 1
    local wait = due - now_ms()
    if wait > 0 then return wait end
    return 0
  end
end

local function pick(pool, n)
  return pool[n % #pool + 1]
end

local function start(n)
  local to = string.format("+81%s%08d", prefix, 10000000 + n)
  return wrk.format("POST", base, headers, '{"to":"' .. to .. '","channel":"sms"}')
end

local function check(entry, right)
  local code = entry.code
  if not right then
    code = code == "000000" and "111111" or "000000"
  end
  return wrk.format("POST", base .. "/" .. entry.id .. "/check", headers, '{"code":"' .. code .. '"}')
end

-- mixed: in every 25 requests, 10 starts, 3 resends, 10 right checks and
-- 2 wrong ones (1 start : 0.3 resends : 1.2 checks).
local function mixed(n)
  local cycle, slot = math.floor(n / 25), n % 25
  if slot < 10 then return start(cycle * 10 + slot) end
  if slot < 13 then
    local entry = pick(resends, cycle * 3 + slot - 10)
    return wrk.format("POST", base .. "/" .. entry.id .. "/resend", headers, "")
  end
  if slot < 23 then return check(pick(checks, cycle * 10 + slot - 13), true) end
  return check(pick(resends, cycle * 2 + slot - 23), false)
end

function request()
  local n = offset + thread_index + threads * sent
  sent = sent + 1
  if kind == "start" then return start(n) end
  if kind == "check-right" then return check(pick(checks, n), true) end
  if kind == "check-wrong" then return check(pick(checks, n), false) end
  return mixed(n)
end

function done(summary, latency, requests)
  local errors = summary.errors
  -- Threads run at different speeds: the next run starts past the
  -- furthest sequence number any thread reached.
  local furthest = 0
  for _, thread in ipairs(all_threads) do
    furthest = math.max(furthest, thread:get("sent"))
  end
  local out = assert(io.open(os.getenv("BENCH_OUT"), "w"))
  out:write(string.format(
    '{"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"next_offset":%d}\n',
    summary.requests, summary.duration, errors.connect, errors.read,
    errors.write, errors.status, errors.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max,
    offset + threads * (furthest + 1)))
  out:close()
end
