-- Rate limits (GCRA): how many of a read's jobs may start now. Not run on its
-- own; refill.lua, called after every read, starts with this text
-- (streams.lua.Script, `uses`) and takes capacity for a function with limits in
-- the same call, so checking the limits costs no round trip of its own.
--
-- Limits.take(t, KEYS..., ARGV...) with t = redis.call('TIME');
-- state: limiter state (HASH: '*' and each workspace -> theoretical arrival
-- time, microseconds in hexadecimal), overrides (HASH: '*' or a workspace ->
-- rate/s), deferrals (HASH: workspace -> "count|last ms|jobs asked|limit hit"),
-- deferlog (HASH: workspace -> its recent seconds with deferrals, newest first,
-- ';'-separated "first ms|jobs asked|jobs held back|limit hit|its rate/s");
-- global_rate: the function's global rate where its limiter is the partition's
-- (one partition; with several it is global_limit.lua's), jobs/s, '0': none,
-- workspace_rate: the per-workspace rate ('0': none), burst: seconds of rate,
-- horizon_ms: how far ahead slots are reserved for jobs not granted now, where
-- the global limit holds them back, workspace_horizon_ms: where their own does,
-- fields: msgpack array of the workspaces, then '*' where the global limiter is
-- the partition's, asked: msgpack array of the
-- jobs each workspace asks for, history: how many seconds deferlog keeps.
-- Returns {} when every workspace got all it asked (the common case); otherwise
-- Redis's time (ms), then for each workspace not granted all it asked a
-- quintuple: position in the call (1-based), granted, how many of the rest hold
-- a reserved slot (the first ones), the Redis time (ms) each of the rest is due:
-- its slot, or for one without, when its slot enters the horizon, and 1 when the
-- global limit is what held it back (0: its own).
-- Exact across any number of workers: one script holds the partition's state.
--
-- A read of 100 jobs from 100 workspaces asks for 100 workspaces, so the cost
-- per workspace is the cost per job: the names arrive packed (one argument, not
-- two per workspace, no prefix to build) and the overrides are read only when
-- some exist. Times are stored as hexadecimal microseconds: Redis formats a
-- fractional number for HSET with printf's %.17g (4,000 instructions each, a
-- fifth of the script) and tonumber parses a decimal with strtod (1,500), where
-- '%x' and tonumber(s, 16) are plain integer conversions.
local Limits = {}

-- A workspace's deferlog: the entry of this second gains the jobs asked and
-- held back now (reads of one second are one event, so a flood shows as the
-- seconds it lasted, not as the last few reads), else a new entry goes first and
-- the oldest past `keep` goes. Only for reads that held jobs back.
local function log_deferral(deferlog, workspace, now_ms, asked, held, hit, rate, keep)
  local format, floor = string.format, math.floor
  local old = redis.call('HGET', deferlog, workspace)
  local rest = old or ''
  if old then
    local ms, was_asked, was_held, after = string.match(old, '^(%d+)|(%d+)|(%d+)|[^;]*(.*)$')
    if ms and floor(tonumber(ms) / 1000) == floor(now_ms / 1000) then
      now_ms, asked, held = tonumber(ms), asked + tonumber(was_asked), held + tonumber(was_held)
      rest = string.sub(after, 2)
    end
  end
  local log = format('%d|%d|%d|%s|%.10g', now_ms, asked, held, hit, rate)
  if rest ~= '' then
    log = log .. ';' .. rest
    local at = 0
    for _ = 1, keep do
      at = string.find(log, ';', at + 1, true)
      if not at then break end
    end
    if at then log = string.sub(log, 1, at - 1) end
  end
  redis.call('HSET', deferlog, workspace, log)
end

-- A workspace's record of deferrals gains `held` jobs held back of the `asked`
-- it asked for, by the limit `hit` ('global' or 'workspace') at `rate` jobs/s,
-- and its deferlog the same, with `logged` of the jobs asked (0 for jobs whose
-- read was logged already: global.lua's note after the partition's refill).
function Limits.note(deferrals, deferlog, workspace, now_ms, asked, held, hit, rate, keep, logged)
  local prev = redis.call('HGET', deferrals, workspace)
  local count = prev and tonumber(string.match(prev, '^(%d+)')) or 0
  redis.call('HSET', deferrals, workspace,
    (count + held) .. '|' .. now_ms .. '|' .. asked .. '|' .. hit)
  log_deferral(deferlog, workspace, now_ms, logged, held, hit, rate, keep)
end

function Limits.take(t, state, limits, deferrals, deferlog, global_rate, workspace_rate, burst,
                     horizon_ms, workspace_horizon_ms, packed_fields, packed_asked, history)
  local floor, ceil, max, min = math.floor, math.ceil, math.max, math.min
  local format = string.format
  local now = t[1] * 1000000 + t[2]
  local burst_s = tonumber(burst)
  local fields = cmsgpack.unpack(packed_fields)
  local asked = cmsgpack.unpack(packed_asked)
  local n = #asked

  local tats = redis.call('HMGET', state, unpack(fields))
  local overrides = {}
  if redis.call('EXISTS', limits) == 1 then
    overrides = redis.call('HMGET', limits, unpack(fields))
  end

  -- How many of `want` conform to a limiter with this interval and tolerance
  -- (microseconds) and theoretical arrival time.
  local function room(interval, tolerance, tat, want)
    local k = floor((now + tolerance - max(tat, now)) / interval) + 1
    return max(0, min(want, k))
  end

  local function tolerance(rate, interval)
    return max(0, burst_s * rate - 1) * interval
  end

  local grate = tonumber(overrides[n + 1] or global_rate)
  local gtat = tonumber(tats[n + 1] or '0', 16)
  local gint, gtol = 0, 0
  if grate > 0 then
    gint = 1000000 / grate
    gtol = tolerance(grate, gint)
  end
  local default_wrate = tonumber(workspace_rate)
  local gahead = tonumber(horizon_ms) * 1000
  local wahead = tonumber(workspace_horizon_ms) * 1000
  local out, updates, u = {}, {}, 0
  for j = 1, n do
    local want = asked[j]
    local wrate = tonumber(overrides[j]) or default_wrate
    local gk, wk, wint, wtol, wtat = want, want, 0, 0, 0
    if grate > 0 then gk = room(gint, gtol, gtat, want) end
    local k = gk
    if wrate > 0 then
      wint = 1000000 / wrate
      wtol = tolerance(wrate, wint)
      wtat = tonumber(tats[j] or '0', 16)
      wk = room(wint, wtol, wtat, want)
      k = min(k, wk)
      wtat = max(wtat, now) + k * wint
    end
    if grate > 0 then gtat = max(gtat, now) + k * gint end
    if k < want then
      -- Each job not granted gets the next slot both limits allow, reserved in
      -- their state: the worker holds it until then (runtime.worker.limiter), and no
      -- other job takes that slot. Reserved only within a horizon: where the
      -- global limit binds, far (a worker holds no more than its capacity, so
      -- its reads slow to the limit); where the workspace's own does, near, so
      -- one workspace's flood fills no worker with its jobs. A job past it comes
      -- back when its slot enters the horizon, to ask again. A reservation
      -- moves each limiter on by one interval from now, never to the slot: a
      -- workspace's slot far ahead must not book the global rate up to it.
      local interval = max(gint, wint)
      local dues, reserved = {}, 0
      for i = 1, want - k do
        local gslot, wslot = now, now
        if grate > 0 then gslot = max(now, gtat - gtol) end
        if wrate > 0 then wslot = max(now, wtat - wtol) end
        local slot, ahead = gslot, gahead
        if wslot > gslot then slot, ahead = wslot, wahead end
        if slot - now > ahead then
          for r = 0, want - k - i do
            dues[#dues + 1] = ceil((slot - ahead + r * interval) / 1000)
          end
          break
        end
        if grate > 0 then gtat = max(gtat, now) + gint end
        if wrate > 0 then wtat = max(wtat, now) + wint end
        reserved = reserved + 1
        dues[#dues + 1] = ceil(slot / 1000)
      end
      local hit = (gk <= wk) and 'global' or 'workspace'
      Limits.note(deferrals, deferlog, fields[j], floor(now / 1000), want, want - k, hit,
        hit == 'global' and grate or wrate, tonumber(history), want)
      out[#out + 1] = j
      out[#out + 1] = k
      out[#out + 1] = reserved
      out[#out + 1] = dues
      out[#out + 1] = hit == 'global' and 1 or 0
    end
    if wrate > 0 then
      updates[u + 1] = fields[j]
      updates[u + 2] = format('%x', ceil(wtat))
      u = u + 2
    end
  end
  if grate > 0 then
    updates[u + 1] = '*'
    updates[u + 2] = format('%x', ceil(gtat))
    u = u + 2
  end
  if u > 0 then
    redis.call('HSET', state, unpack(updates))
  end
  if #out > 0 then table.insert(out, 1, floor(now / 1000)) end
  return out
end
