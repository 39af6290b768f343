-- The global rate limit of a function with several partitions (GCRA, as
-- lib/limits.lua keeps it for a function with one): one limiter for all of its
-- partitions, in a slot of its own (keys.global_limit), asked after a partition's
-- refill took the workspaces' own limits, for the jobs those let start. A share
-- of the rate per partition would hold a busy workspace, whose jobs all live in
-- one partition, to a fraction of the limit.
-- KEYS[1] global_limit (HASH: 'tat' -> theoretical arrival time, hexadecimal
-- microseconds; 'rate' -> the run-time override, jobs/s)
-- ARGV[1] the declared rate (jobs/s, '0': none), ARGV[2] burst (seconds of rate),
-- ARGV[3] horizon (ms): how far ahead slots are reserved, ARGV[4] msgpack array:
-- per job in the order asked, the ms from now it may start at the earliest (0:
-- now; else the slot its workspace's own limit reserved for it).
-- Returns {} without a rate; else Redis's time (ms), the rate in force (jobs/s,
-- a string), then per job the ms from now its slot comes (0: it starts now), or
-- for a job whose slot lies past the horizon, -1 minus the ms from now it is due
-- to ask again (when its slot enters the horizon).
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local ceil, floor, max = math.ceil, math.floor, math.max
local override, stored = unpack(redis.call('HMGET', KEYS[1], 'rate', 'tat'))
local rate = tonumber(override or ARGV[1])
if rate <= 0 then return {} end
local interval = 1000000 / rate
local tolerance = max(0, tonumber(ARGV[2]) * rate - 1) * interval
local ahead = tonumber(ARGV[3]) * 1000
local tat = tonumber(stored or '0', 16)
local out = {floor(now / 1000), tostring(rate)}
local past = nil
for _, earliest in ipairs(cmsgpack.unpack(ARGV[4])) do
  local from = now + earliest * 1000
  if past then
    -- Past the horizon: each next one a slot later, none reserved.
    past = past + interval
    out[#out + 1] = -1 - ceil((max(from, past - tolerance) - ahead - now) / 1000)
  else
    local slot = max(from, tat - tolerance)
    if slot - now > ahead then
      past = tat
      out[#out + 1] = -1 - ceil((slot - ahead - now) / 1000)
    else
      -- Reserved (or granted, at `now`): the limiter moves on by one interval
      -- from now, never to the slot, as in limits.lua: a workspace's slot ahead
      -- must not book the global rate up to it.
      tat = max(tat, now) + interval
      out[#out + 1] = ceil((slot - now) / 1000)
    end
  end
end
redis.call('HSET', KEYS[1], 'tat', string.format('%x', ceil(tat)))
return out
