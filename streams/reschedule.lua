-- Move the due time of one delayed job.
-- KEYS[1] job records, KEYS[2] delayed; ARGV[1] wake channel, ARGV[2] job id,
-- ARGV[3] due at (epoch ms, 0: none), ARGV[4] delay ms
-- Returns the job's state: 'delayed' when moved; anything else changes nothing.
-- A due time not in the future still waits for the scheduler, which promotes it
-- at once on the wake-up.
local id = ARGV[2]
local record = redis.call('HGET', KEYS[1], id)
if not record then return 'missing' end
local state, workspace, priority, attempts, rest = string.match(record,
  '^([^|]*)|([^|]*)|([^|]*)|[^|]*|([^|]*)|(.*)$')
if state ~= 'delayed' then
  return string.match(record, '^([^|]*)|')
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local due = tonumber(ARGV[3])
if due == 0 then due = now + tonumber(ARGV[4]) end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
redis.call('ZADD', KEYS[2], due, id)
redis.call('HSET', KEYS[1], id, 'delayed|' .. workspace .. '|' .. priority .. '|' .. due .. '|'
  .. attempts .. '|' .. rest)
if not first[2] or due < tonumber(first[2]) then
  redis.call('PUBLISH', ARGV[1], due)
end
return 'delayed'
