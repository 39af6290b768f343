-- Take capacity for jobs of one function partition from its rate limits (GCRA).
-- KEYS[1] limiter state (HASH: '*' and 'ws:<workspace>' -> theoretical arrival
-- time, ms), KEYS[2] limit overrides (HASH: '*' or 'ws:<workspace>' -> rate/s),
-- KEYS[3] deferrals (HASH: workspace -> "count|last ms|jobs asked|limit hit")
-- ARGV[1] this partition's share of the global rate (jobs/s, 0: none),
-- ARGV[2] the per-workspace rate (0: none), ARGV[3] burst, in seconds of rate,
-- then pairs: workspace, jobs asked
-- Returns per workspace {granted, ms until the next job may start, ms between
-- jobs at the binding rate}. Exact across any number of workers: one script
-- holds the partition's limiter state.
local t = redis.call('TIME')
local now = t[1] * 1000 + t[2] / 1000
local burst_s = tonumber(ARGV[3])

local function rate_of(field, default)
  local override = redis.call('HGET', KEYS[2], field)
  return tonumber(override or default)
end

-- How many of `asked` conform to the limiter (rate/s, its TAT), and the interval.
local function room(rate, tat, asked)
  if rate <= 0 then return asked, 0 end
  local interval = 1000 / rate
  local tolerance = math.max(0, burst_s * rate - 1) * interval
  local k = math.floor((now + tolerance - math.max(tat, now)) / interval) + 1
  return math.max(0, math.min(asked, k)), interval
end

local out = {}
for i = 4, #ARGV, 2 do
  local workspace, asked = ARGV[i], tonumber(ARGV[i + 1])
  local wsf = 'ws:' .. workspace
  local grate = rate_of('*', ARGV[1])
  local wrate = rate_of(wsf, ARGV[2])
  local gtat = tonumber(redis.call('HGET', KEYS[1], '*') or 0)
  local wtat = tonumber(redis.call('HGET', KEYS[1], wsf) or 0)
  local gk, gint = room(grate, gtat, asked)
  local wk, wint = room(wrate, wtat, asked)
  local k = math.min(gk, wk)
  local waits, interval = {0}, math.max(gint, wint)
  if grate > 0 then
    gtat = math.max(gtat, now) + k * gint
    redis.call('HSET', KEYS[1], '*', gtat)
    waits[#waits + 1] = gtat - math.max(0, burst_s * grate - 1) * gint - now
  end
  if wrate > 0 then
    wtat = math.max(wtat, now) + k * wint
    redis.call('HSET', KEYS[1], wsf, wtat)
    waits[#waits + 1] = wtat - math.max(0, burst_s * wrate - 1) * wint - now
  end
  if k < asked then
    local hit = (gk <= wk) and 'global' or 'workspace'
    local prev = redis.call('HGET', KEYS[3], workspace)
    local count = prev and tonumber(string.match(prev, '^(%d+)')) or 0
    redis.call('HSET', KEYS[3], workspace,
      (count + asked - k) .. '|' .. math.floor(now) .. '|' .. asked .. '|' .. hit)
  end
  out[#out + 1] = {k, math.ceil(math.max(0, unpack(waits))), math.ceil(interval)}
end
return out
