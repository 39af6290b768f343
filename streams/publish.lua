-- Publish many jobs into one function partition, atomically.
-- uses: record admit links
-- KEYS[1] stream, KEYS[2] stats, KEYS[3] jobs (HASH id -> record),
-- KEYS[4] delayed (ZSET id -> due ms), KEYS[5] keyed (HASH "ws/key" -> job id),
-- KEYS[6] tagged (ZSET of "ws/tag/id", score 0), KEYS[7] backlog, KEYS[8] share,
-- KEYS[9] wake (the channel; sharded: it carries the partition's hash tag)
-- ARGV[1] group (made with the stream if missing: admit.lua), ARGV[2] each
-- workspace's share of the stream (admit.lua), then 7 per job: job id, workspace,
-- due at (epoch ms, 0: none), delay ms, encoded envelope, links ("ws/key" or "",
-- then " ws/tag/id" per tag), priority (0 high, 1 normal, 2 low)
-- Returns, per job, its new stream entry id, 1 when it waits in `delayed`, 2 when
-- it waits in its workspace's backlog, or 0 when the job id already exists (a
-- duplicate publish, or a client retry of this very call).
-- Records: see streams/record.py; a delayed or backlogged job's tail is its
-- envelope.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local now_text = tostring(now)
Admit.setup(KEYS[1], KEYS[3], KEYS[7], KEYS[8], KEYS[2], ARGV[2], now_text, ARGV[1])
local first = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
local earliest = first[2] and tonumber(first[2]) or math.huge
local out, seen, parked, records = {}, {}, {}, {}
local soonest, replaced = math.huge, 0

-- The ids that exist already, in one HMGET rather than a HEXISTS a job.
local ids = {}
for a = 3, #ARGV, 7 do ids[#ids + 1] = ARGV[a] end
local known = {}
if #ids > 0 then
  for i, record in ipairs(redis.call('HMGET', KEYS[3], unpack(ids))) do
    if record then known[ids[i]] = true end
  end
end

-- Records and due times are written with one variadic HSET and ZADD per 1000
-- jobs instead of a command a job.
local function flush()
  for i = 1, #records, 1000 do
    redis.call('HSET', KEYS[3], unpack(records, i, math.min(i + 999, #records)))
  end
  for i = 1, #parked, 1000 do
    redis.call('ZADD', KEYS[4], unpack(parked, i, math.min(i + 999, #parked)))
  end
  records, parked = {}, {}
end

-- A business key names one live job: a job of the key that has not started is
-- replaced (removed here, the new one written below); one running or finished
-- stays, and the key moves to the new job.
local function replace(old)
  if Links.replace(KEYS[3], KEYS[4], KEYS[5], KEYS[6], old, ARGV[1]) then
    known[old] = nil
    replaced = replaced + 1
  end
end

local written = 0
for a = 3, #ARGV, 7 do
  local id, workspace, links = ARGV[a], ARGV[a + 1], ARGV[a + 5]
  if seen[id] or known[id] then
    out[#out + 1] = 0
  else
    seen[id] = true
    written = written + 1
    if links ~= '' then
      local keyfield, members = string.match(links, '^(%S*) ?(.*)$')
      if keyfield ~= '' then
        local old = redis.call('HGET', KEYS[5], keyfield)
        if old then
          flush()  -- the old job may be one of this very call
          replace(old)
        end
        redis.call('HSET', KEYS[5], keyfield, id)
      end
      for m in string.gmatch(members, '%S+') do redis.call('ZADD', KEYS[6], 0, m) end
    end
    -- Due times are Redis's clock: a delay counts from now here, not on the host.
    local due = tonumber(ARGV[a + 2])
    if due == 0 then due = now + tonumber(ARGV[a + 3]) end
    if due <= now then
      local place, entered = Admit.enter(workspace, id, ARGV[a + 6], ARGV[a + 4])
      records[#records + 1] = id
      records[#records + 1] = Record.queued(workspace, place, now_text, '0', links,
        entered and '' or ARGV[a + 4])
      out[#out + 1] = entered and place or 2
    else
      records[#records + 1] = id
      records[#records + 1] = Record.delayed(workspace, ARGV[a + 6], due, '0', links, ARGV[a + 4])
      parked[#parked + 1] = due
      parked[#parked + 1] = id
      if due < soonest then soonest = due end
      out[#out + 1] = 1
    end
  end
end
flush()
Admit.finish()
if written > 0 then
  redis.call('HINCRBY', KEYS[2], 'published', written)
end
if replaced > 0 then
  redis.call('HINCRBY', KEYS[2], 'replaced', replaced)
end
-- Schedulers sleep until the earliest due time they know; wake them for an earlier one.
if soonest < earliest then
  redis.call('SPUBLISH', KEYS[9], soonest)
end
return out
