-- Cancel one job that has not started: a delayed one leaves the delayed set, a
-- queued one its stream entry (unread entries only: no worker ever sees it).
-- KEYS[1] job records, KEYS[2] delayed, KEYS[3] stream, KEYS[4] stats,
-- KEYS[5] retention index; ARGV[1] group, ARGV[2] job id
-- Returns 'cancelled' (now, or already before); else what kept it, changing
-- nothing: 'missing', 'active' (a worker holds it) or a finished state.
local id = ARGV[2]
local record = redis.call('HGET', KEYS[1], id)
if not record then return 'missing' end
local state, workspace, eid, at, attempts = string.match(record,
  '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|')
if state == 'queued' then
  if #redis.call('XPENDING', KEYS[3], ARGV[1], eid, eid, 1) == 1 then return 'active' end
  redis.call('XDEL', KEYS[3], eid)
elseif state == 'delayed' then
  redis.call('ZREM', KEYS[2], id)
else
  return state
end
local t = redis.call('TIME')
local now = tostring(t[1] * 1000 + math.floor(t[2] / 1000))
redis.call('HSET', KEYS[1], id, 'cancelled|' .. workspace .. '|' .. eid .. '|' .. at .. '|'
  .. attempts .. '|' .. now .. '||')
-- Kept, then dropped, like a completed job's record.
redis.call('ZADD', KEYS[5], now, id)
redis.call('HINCRBY', KEYS[4], 'cancelled', 1)
return 'cancelled'
