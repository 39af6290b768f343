-- Move the due time of one delayed job.
-- uses: record lookup
-- KEYS[1] jobs, KEYS[2] delayed, KEYS[3] wake (the channel, sharded); ARGV[1] due at
-- (epoch ms, 0: none), ARGV[2] delay ms, ARGV[3] the job's workspace ('': any),
-- then the stored ids it may have (lookup.lua)
-- Returns the job's state: 'delayed' when moved; anything else changes nothing.
-- A due time not in the future still waits for the scheduler, which promotes it
-- at once on the wake-up.
local id, record = Lookup.find(KEYS[1], ARGV[3], 4)
if not id then return 'missing' end
local r = Record.parse(record)
if r.state ~= 'delayed' then return r.state end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local due = tonumber(ARGV[1])
if due == 0 then due = now + tonumber(ARGV[2]) end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
redis.call('ZADD', KEYS[2], due, id)
r.at = due
redis.call('HSET', KEYS[1], id, Record.format(r))
if not first[2] or due < tonumber(first[2]) then
  redis.call('SPUBLISH', KEYS[3], due)
end
return 'delayed'
