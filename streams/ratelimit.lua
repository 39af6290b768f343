-- Take capacity for jobs of one function partition from its rate limits (GCRA).
-- KEYS[1] limiter state (HASH: '*' and 'ws:<workspace>' -> theoretical arrival
-- time, ms), KEYS[2] limit overrides (HASH: '*' or 'ws:<workspace>' -> rate/s),
-- KEYS[3] deferrals (HASH: workspace -> "count|last ms|jobs asked|limit hit")
-- ARGV[1] this partition's share of the global rate (jobs/s, 0: none),
-- ARGV[2] the per-workspace rate (0: none), ARGV[3] burst, in seconds of rate,
-- then pairs: workspace, jobs asked
-- Returns, only for the workspaces not granted all they asked, flat triples:
-- position in the call (1-based), granted, ms until the next job may start, ms
-- between jobs at the binding rate (the common case, all granted, returns {}).
-- Exact across any number of workers: one script holds the partition's state.
local t = redis.call('TIME')
local now = t[1] * 1000 + t[2] / 1000
local burst_s = tonumber(ARGV[3])

-- Every field this call needs, read at once: '*' then each 'ws:<workspace>'.
local fields = {'*'}
for i = 4, #ARGV, 2 do fields[#fields + 1] = 'ws:' .. ARGV[i] end
local overrides = redis.call('HMGET', KEYS[2], unpack(fields))
local tats = redis.call('HMGET', KEYS[1], unpack(fields))

-- How many of `asked` conform to a limiter (rate/s, its TAT), the interval, and
-- the limiter's tolerance.
local function room(rate, tat, asked)
  if rate <= 0 then return asked, 0, 0 end
  local interval = 1000 / rate
  local tolerance = math.max(0, burst_s * rate - 1) * interval
  local k = math.floor((now + tolerance - math.max(tat, now)) / interval) + 1
  return math.max(0, math.min(asked, k)), interval, tolerance
end

local grate = tonumber(overrides[1] or ARGV[1])
local gtat = tonumber(tats[1] or 0)
local out, updates = {}, {}
for j = 2, #fields do
  local workspace, asked = ARGV[2 * j], tonumber(ARGV[2 * j + 1])
  local wrate = tonumber(overrides[j] or ARGV[2])
  local wtat = tonumber(tats[j] or 0)
  local gk, gint, gtol = room(grate, gtat, asked)
  local wk, wint, wtol = room(wrate, wtat, asked)
  local k = math.min(gk, wk)
  local wait = 0
  if grate > 0 then
    gtat = math.max(gtat, now) + k * gint
    wait = math.max(wait, gtat - gtol - now)
  end
  if wrate > 0 then
    wtat = math.max(wtat, now) + k * wint
    wait = math.max(wait, wtat - wtol - now)
    updates[#updates + 1] = fields[j]
    updates[#updates + 1] = wtat
  end
  if k < asked then
    local hit = (gk <= wk) and 'global' or 'workspace'
    local prev = redis.call('HGET', KEYS[3], workspace)
    local count = prev and tonumber(string.match(prev, '^(%d+)')) or 0
    redis.call('HSET', KEYS[3], workspace,
      (count + asked - k) .. '|' .. math.floor(now) .. '|' .. asked .. '|' .. hit)
    out[#out + 1] = j - 1
    out[#out + 1] = k
    out[#out + 1] = math.ceil(wait)
    out[#out + 1] = math.ceil(math.max(gint, wint))
  end
end
if grate > 0 then
  updates[#updates + 1] = '*'
  updates[#updates + 1] = gtat
end
if #updates > 0 then
  redis.call('HSET', KEYS[1], unpack(updates))
end
return out
