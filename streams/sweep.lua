-- Housekeeping of one partition's data no other script bounds (sluice.cleanup).
-- KEYS[1] stream, KEYS[2] rate, KEYS[3] deferrals, KEYS[4] deferlog
-- ARGV[1] group, ARGV[2] idle ms after which a consumer holding nothing is
-- deleted, ARGV[3] Redis time (ms) before which a workspace's last deferral
-- makes its record and history stale
-- Returns {consumers deleted, limiter states deleted, deferral records deleted}.
-- The reclaimer of a running worker deletes its function's idle consumers; a
-- function no worker runs any more keeps them until this does, in the script
-- that sees the pending list empty (DELCONSUMER drops pending entries for good).
local consumers = 0
local listed = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if type(listed) == 'table' and not listed.err then
  local stale = tonumber(ARGV[2])
  for _, c in ipairs(listed) do
    local name, pending, idle
    for f = 1, #c, 2 do
      if c[f] == 'name' then name = c[f + 1]
      elseif c[f] == 'pending' then pending = c[f + 1]
      elseif c[f] == 'idle' then idle = c[f + 1] end
    end
    if pending == 0 and idle >= stale then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
      consumers = consumers + 1
    end
  end
end
-- A workspace's limiter state is its theoretical arrival time (hex microseconds,
-- streams/lib/limits.lua); one already past means no slot is reserved, which is
-- what no state means too, so deleting it grants nothing. Each workspace that
-- ever ran a limited job has one, and nothing else removes it.
local t = redis.call('TIME')
local now_us = t[1] * 1000000 + t[2]
local states = 0
local rate = redis.call('HGETALL', KEYS[2])
for i = 1, #rate, 2 do
  if (tonumber(rate[i + 1], 16) or 0) < now_us then
    redis.call('HDEL', KEYS[2], rate[i])
    states = states + 1
  end
end
-- Deferral records: "count|last ms|jobs asked|limit hit".
local deferrals = 0
local cutoff = tonumber(ARGV[3])
local records = redis.call('HGETALL', KEYS[3])
for i = 1, #records, 2 do
  local last = tonumber(string.match(records[i + 1], '^[^|]*|([^|]*)'))
  if last and last < cutoff then
    redis.call('HDEL', KEYS[3], records[i])
    redis.call('HDEL', KEYS[4], records[i])
    deferrals = deferrals + 1
  end
end
return {consumers, states, deferrals}
