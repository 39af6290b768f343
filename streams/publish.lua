-- Publish many jobs into one function partition, atomically.
-- KEYS[1] stream, KEYS[2] stats, KEYS[2+i] job hash of job i
-- ARGV[2i-1] workspace of job i, ARGV[2i] its encoded envelope
-- Returns, per job, the new stream entry id, or 0 when the job id already
-- exists (a duplicate publish, or a client retry of this very call).
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local out = {}
local added = 0
for i = 1, #KEYS - 2 do
  local job = KEYS[2 + i]
  if redis.call('EXISTS', job) == 1 then
    out[i] = 0
  else
    local eid = redis.call('XADD', KEYS[1], '*', 'e', ARGV[2 * i])
    redis.call('HSET', job, 's', 'queued', 'w', ARGV[2 * i - 1], 'e', eid, 'q', now)
    out[i] = eid
    added = added + 1
  end
end
if added > 0 then
  redis.call('HINCRBY', KEYS[2], 'published', added)
end
return out
