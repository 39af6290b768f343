-- Write when a worker's running jobs started, for those it still holds.
-- KEYS[1] stream, KEYS[2] started (HASH entry id -> Redis time in ms)
-- ARGV[1] group, ARGV[2] consumer, then pairs: entry id, ms since its handler started
-- Returns how many were written.
-- Checked against the pending list in the same script as the write: a job settled
-- (its field deleted by settle.lua) or taken over (reclaim.lua) before this call
-- ran is skipped, so no field outlives its entry. The start is told as an age and
-- turned into Redis time here: status pages compare it with Redis's clock, not
-- with the worker's.
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
local fields = {}
for i = 3, #ARGV, 2 do
  local eid = ARGV[i]
  local p = redis.pcall('XPENDING', stream, group, eid, eid, 1, consumer)
  if type(p) == 'table' and p[1] then
    fields[#fields + 1] = eid
    fields[#fields + 1] = now_ms - tonumber(ARGV[i + 1])
  end
end
if #fields > 0 then redis.call('HSET', KEYS[2], unpack(fields)) end
return #fields / 2
