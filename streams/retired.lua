-- What is left in a partition of a function's earlier layout (streams.layouts),
-- after dropping its records finished longer ago than the retention period (no
-- settle runs there to drop them any more).
-- KEYS[1] stream, KEYS[2] delayed, KEYS[3] backlog, KEYS[4] jobs, KEYS[5] done
-- ARGV[1] retention ms
-- Returns {work, records, ms until the first delayed job is due (-1: none)}: work
-- is the stream's entries (unread and pending: settled ones are deleted), the
-- delayed jobs and the backlog's.
local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
local old = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now_ms - tonumber(ARGV[1]),
  'LIMIT', 0, 500)
if #old > 0 then
  redis.call('HDEL', KEYS[4], unpack(old))
  redis.call('ZREM', KEYS[5], unpack(old))
end
local work = redis.call('XLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2])
  + redis.call('ZCARD', KEYS[3])
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local due_in = -1
if first[2] then due_in = math.max(0, tonumber(first[2]) - now_ms) end
return {work, redis.call('HLEN', KEYS[4]), due_in}
