-- Publish many jobs into one function partition, atomically.
-- KEYS[1] stream, KEYS[2] stats, KEYS[3] job records (HASH id -> record)
-- ARGV[3i-2] job id, ARGV[3i-1] workspace, ARGV[3i] encoded envelope of job i
-- Returns, per job, the new stream entry id, or 0 when the job id already
-- exists (a duplicate publish, or a client retry of this very call).
-- A record is "state|workspace|entry id|queued ms|attempts|finished ms|dead id|error".
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local out, records, seen = {}, {}, {}
for i = 1, #ARGV / 3 do
  local id = ARGV[3 * i - 2]
  if seen[id] or redis.call('HEXISTS', KEYS[3], id) == 1 then
    out[i] = 0
  else
    seen[id] = true
    local eid = redis.call('XADD', KEYS[1], '*', 'e', ARGV[3 * i])
    records[#records + 1] = id
    records[#records + 1] = 'queued|' .. ARGV[3 * i - 1] .. '|' .. eid .. '|' .. now .. '|0|0||'
    out[i] = eid
  end
end
-- One variadic HSET for the whole call instead of a command a job.
for i = 1, #records, 1000 do
  redis.call('HSET', KEYS[3], unpack(records, i, math.min(i + 999, #records)))
end
if #records > 0 then
  redis.call('HINCRBY', KEYS[2], 'published', #records / 2)
end
return out
