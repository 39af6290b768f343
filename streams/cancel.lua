-- Cancel jobs that have not started: by id, by business key, or every job of a
-- tag. A delayed one leaves the delayed set; a queued one its stream entry (only
-- while unread, so no worker ever sees it).
-- uses: record admit links lookup
-- KEYS[1] jobs, KEYS[2] delayed, KEYS[3] stream, KEYS[4] stats,
-- KEYS[5] done (the retention index), KEYS[6] keyed, KEYS[7] tagged, KEYS[8] backlog,
-- KEYS[9] share
-- ARGV[1] group, ARGV[2] 'id' | 'key' | 'tag', ARGV[3] the job's workspace ('':
-- any), "ws/key", or "ws/tag/" (a prefix of the tag's members), ARGV[4] each
-- workspace's share of the stream (admit.lua): a cancelled entry's place goes to
-- the next in its backlog; by id, then the stored ids it may have (lookup.lua)
-- Returns pairs {stored job id, outcome}: 'cancelled' (now, or already before),
-- else what kept it, changing nothing: 'active' (a worker holds it) or a
-- finished state; none for a job not found. Records: see streams/record.py.
local mode, selector = ARGV[2], ARGV[3]
local t = redis.call('TIME')
local now = tostring(t[1] * 1000 + math.floor(t[2] / 1000))
Admit.setup(KEYS[3], KEYS[1], KEYS[8], KEYS[9], KEYS[4], ARGV[4], now)

local function cancel(id)
  local record = redis.call('HGET', KEYS[1], id)
  if not record then return 'missing' end
  local r = Record.parse(record)
  if not r then return 'missing' end
  if r.state == 'queued' then
    if not Admit.withdraw(r, id, ARGV[1]) then return 'active' end
  elseif r.state == 'delayed' then
    redis.call('ZREM', KEYS[2], id)
  else
    return r.state
  end
  Links.release(KEYS[6], KEYS[7], r.links, id)
  -- A backlog place means a job waiting there: a cancelled one has none.
  r.state, r.finished, r.dead, r.tail, r.backlog = 'cancelled', now, '', '', nil
  redis.call('HSET', KEYS[1], id, Record.format(r))
  -- Kept, then dropped, like a completed job's record.
  redis.call('ZADD', KEYS[5], now, id)
  redis.call('HINCRBY', KEYS[4], 'cancelled', 1)
  return 'cancelled'
end

local ids = {}
if mode == 'id' then
  ids[1] = Lookup.find(KEYS[1], selector, 5)
  if not ids[1] then return {} end
elseif mode == 'key' then
  ids[1] = redis.call('HGET', KEYS[6], selector)
  if not ids[1] then return {} end
else
  for _, m in ipairs(redis.call('ZRANGEBYLEX', KEYS[7], '[' .. selector, '[' .. selector .. '\255')) do
    ids[#ids + 1] = string.sub(m, #selector + 1)
  end
end
local out = {}
for _, id in ipairs(ids) do
  local outcome = cancel(id)
  if mode == 'tag' and outcome ~= 'active' then
    -- Finished or gone: the tag no longer needs to find it.
    redis.call('ZREM', KEYS[7], selector .. id)
  end
  out[#out + 1] = id
  out[#out + 1] = outcome
end
Admit.finish()
return out
