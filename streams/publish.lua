-- Publish many jobs into one function partition, atomically.
-- KEYS[1] stream, KEYS[2] stats, KEYS[3] job records (HASH id -> record),
-- KEYS[4] delayed (ZSET id -> due ms); ARGV[1] wake channel, then 5 per job:
-- job id, workspace, due at (epoch ms, 0: none), delay ms, encoded envelope
-- Returns, per job, its new stream entry id, 1 when it waits in `delayed`, or 0
-- when the job id already exists (a duplicate publish, or a client retry of this
-- very call).
-- Records: "state|workspace|entry id|queued ms|attempts|finished ms|dead id|error";
-- a delayed job's is "delayed|workspace||due ms|attempts|0||envelope": it keeps its
-- envelope until promoted.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local now_text = tostring(now)
local first = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
local earliest = first[2] and tonumber(first[2]) or math.huge
local out, records, seen, parked = {}, {}, {}, {}
local soonest = math.huge
for i = 1, (#ARGV - 1) / 5 do
  local a = 5 * i - 3
  local id, workspace = ARGV[a], ARGV[a + 1]
  if seen[id] or redis.call('HEXISTS', KEYS[3], id) == 1 then
    out[i] = 0
  else
    seen[id] = true
    -- Due times are Redis's clock: a delay counts from now here, not on the host.
    local due = tonumber(ARGV[a + 2])
    if due == 0 then due = now + tonumber(ARGV[a + 3]) end
    records[#records + 1] = id
    if due <= now then
      local eid = redis.call('XADD', KEYS[1], '*', 'e', ARGV[a + 4])
      records[#records + 1] = 'queued|' .. workspace .. '|' .. eid .. '|' .. now_text .. '|0|0||'
      out[i] = eid
    else
      records[#records + 1] = 'delayed|' .. workspace .. '||' .. due .. '|0|0||' .. ARGV[a + 4]
      parked[#parked + 1] = due
      parked[#parked + 1] = id
      if due < soonest then soonest = due end
      out[i] = 1
    end
  end
end
-- One variadic HSET and ZADD for the whole call instead of a command a job.
for i = 1, #records, 1000 do
  redis.call('HSET', KEYS[3], unpack(records, i, math.min(i + 999, #records)))
end
for i = 1, #parked, 1000 do
  redis.call('ZADD', KEYS[4], unpack(parked, i, math.min(i + 999, #parked)))
end
if #records > 0 then
  redis.call('HINCRBY', KEYS[2], 'published', #records / 2)
end
-- Schedulers sleep until the earliest due time they know; wake them for an earlier one.
if soonest < earliest then
  redis.call('PUBLISH', ARGV[1], soonest)
end
return out
