-- Move due jobs of one function partition from `delayed` to the stream (or, past
-- their workspace's share, to its backlog: admit.lua).
-- uses: record admit
-- KEYS[1] delayed (ZSET id -> due ms), KEYS[2] jobs, KEYS[3] stream,
-- KEYS[4] stats, KEYS[5] backlog, KEYS[6] share; ARGV[1] most jobs to move,
-- ARGV[2] each workspace's share of the stream, ARGV[3] 1 to return trace contexts,
-- ARGV[4] group (made with the stream, if this writes it first: admit.lua)
-- Returns {moved, ms until the next job is due (-1: none waiting), traced}:
-- traced holds, with ARGV[3] 1, pairs of job id and the traceparent its envelope
-- carries (for a promotion span in the job's trace; runtime.telemetry.tracing).
-- One script reads and removes each id, so however many schedulers call it at
-- once, a job is promoted by exactly one of them.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local now_text = tostring(now)
Admit.setup(KEYS[3], KEYS[2], KEYS[5], KEYS[6], KEYS[4], ARGV[2], now_text, ARGV[4])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local records, traced = {}, {}

-- The envelope is a msgpack array (streams/envelope.py); its 7th field, when
-- present, is the trace context map. One that does not decode is skipped.
local function traceparent(envelope)
  local ok, fields = pcall(cmsgpack.unpack, envelope)
  if ok and type(fields) == 'table' and type(fields[7]) == 'table' then
    return fields[7]['traceparent']
  end
end

for _, id in ipairs(due) do
  local record = redis.call('HGET', KEYS[2], id)
  -- A record no longer delayed was cancelled or replaced under us and has
  -- nothing to promote.
  local workspace, priority, attempts, links, envelope
  if record then workspace, priority, attempts, links, envelope = Record.delayed_job(record) end
  if envelope then
    local place, entered = Admit.enter(workspace, id, priority, envelope)
    records[#records + 1] = id
    records[#records + 1] = Record.queued(workspace, place, now_text, attempts, links,
      entered and '' or envelope)
    if ARGV[3] == '1' then
      local parent = traceparent(envelope)
      if type(parent) == 'string' then
        traced[#traced + 1] = id
        traced[#traced + 1] = parent
      end
    end
  end
end
if #due > 0 then
  redis.call('ZREM', KEYS[1], unpack(due))
end
if #records > 0 then
  redis.call('HSET', KEYS[2], unpack(records))
  redis.call('HINCRBY', KEYS[4], 'promoted', #records / 2)
end
Admit.finish()
local next = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if next[2] then
  return {#records / 2, math.max(0, tonumber(next[2]) - now), traced}
end
return {#records / 2, -1, traced}
