-- Settle a batch of handled jobs of one function partition in one call.
-- uses: record links
-- KEYS[1] stream, KEYS[2] stats, KEYS[3] dead (the dead-letter stream), KEYS[4] jobs,
-- KEYS[5] done (the retention index: ZSET id -> finished ms), KEYS[6] delayed,
-- KEYS[7] keyed, KEYS[8] tagged, KEYS[9] wake (the channel, sharded), KEYS[10] started
-- (streams/started.py)
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] retention ms, ARGV[4] pending scan limit,
-- ARGV[5] and ARGV[6] the lowest and highest entry id of the batch,
-- ARGV[7] how many completed jobs follow, ARGV[8] how many others,
-- ARGV[9] most finished records kept (0: no limit), ARGV[10] how long dead letters
-- are kept (ms, -1: no limit), ARGV[11] how many (0: no limit);
-- then 5 per completed job: entry id, job id, workspace, attempt, ms its handler ran;
-- then 10 per other job: entry id, job id, workspace, state
-- (retry|defer|dead|expired), attempts ended, error, envelope (retry: the next
-- attempt's; defer: its own; dead: the dead letter's), delay ms (or "@" and the
-- Redis time in ms it is due), priority, ms its last attempt ran (dead);
-- then triples for the jobs with a business key, tags or a result: job id, links,
-- result (msgpack, kept as a completed record's tail).
-- Records: see streams/record.py.
-- Returns {settled, {fenced entry ids}}.
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
-- Written into every record and score: converted to text once, not per job.
local now = tostring(now_ms)

-- Fence: settle only entries still pending for this consumer. A worker that froze
-- past its visibility timeout lost its jobs to another consumer; its late result
-- must not overwrite theirs. One scan of the consumer's own pending list, over
-- just the id range the batch spans, covers the batch; past its limit, an id is
-- checked on its own.
local limit = tonumber(ARGV[4])
local scan = redis.call('XPENDING', stream, group, ARGV[5], ARGV[6], limit, consumer)
local owned = {}
for _, p in ipairs(scan) do owned[p[1]] = true end
local complete = #scan < limit
local function mine(eid)
  if owned[eid] then return true end
  return not complete and #redis.call('XPENDING', stream, group, eid, eid, 1, consumer) == 1
end

local function chunked(cmd, key, items, step)
  for i = 1, #items, step do
    redis.call(cmd, key, unpack(items, i, math.min(i + step - 1, #items)))
  end
end

local settled, fenced, records, finished, parked = {}, {}, {}, {}, {}
local split = 11 + 5 * tonumber(ARGV[7])
local last = split + 10 * tonumber(ARGV[8])
local links, results = {}, {}
for i = last + 1, #ARGV, 3 do
  links[ARGV[i]] = ARGV[i + 1]
  results[ARGV[i]] = ARGV[i + 2]
end

-- A finished job gives up its business key (if still its own) and its tags.
local function unlink(id)
  local l = links[id]
  if not l then return '' end
  Links.release(KEYS[7], KEYS[8], l, id)
  return l
end
local completed, failed, expired, deferred, lettered = 0, 0, 0, 0, 0
for i = 12, split, 5 do
  local eid, id = ARGV[i], ARGV[i + 1]
  if mine(eid) then
    settled[#settled + 1] = eid
    completed = completed + 1
    finished[#finished + 1] = now
    finished[#finished + 1] = id
    records[#records + 1] = id
    records[#records + 1] = Record.settled('completed', ARGV[i + 2], eid, ARGV[i + 3],
      now .. ':' .. ARGV[i + 4], '', unlink(id), results[id] or '')
  else
    fenced[#fenced + 1] = eid
  end
end

local soonest = math.huge
for i = split + 1, last, 10 do
  local eid, id, workspace, state = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if mine(eid) then
    settled[#settled + 1] = eid
    records[#records + 1] = id
    if state == 'expired' then
      -- Picked up past its expiry: never run, kept and dropped like a completed job.
      expired = expired + 1
      finished[#finished + 1] = now
      finished[#finished + 1] = id
      records[#records + 1] = Record.settled('expired', workspace, eid, ARGV[i + 4], now, '',
        unlink(id), '')
    elseif state == 'retry' or state == 'defer' then
      -- A deferral (rate limits) is not a failure and charges no attempt.
      if state == 'retry' then failed = failed + 1 else deferred = deferred + 1 end
      -- The next attempt waits in `delayed` with its envelope, like a delayed publish.
      local wait = ARGV[i + 7]
      local due = string.sub(wait, 1, 1) == '@' and math.max(now_ms, tonumber(string.sub(wait, 2)))
        or now_ms + tonumber(wait)
      parked[#parked + 1] = due
      parked[#parked + 1] = id
      if due < soonest then soonest = due end
      records[#records + 1] = Record.delayed(workspace, ARGV[i + 8], due, ARGV[i + 4],
        links[id] or '', ARGV[i + 6])
    else
      failed = failed + 1
      -- A dead job's record lives as long as its dead letter: not indexed for expiry.
      -- The letter names its job (i), so trimming it can drop the record too.
      local dead_id = redis.call('XADD', KEYS[3], '*', 'e', ARGV[i + 6], 'r', ARGV[i + 5], 'i', id)
      lettered = lettered + 1
      records[#records + 1] = Record.settled('dead', workspace, eid, ARGV[i + 4],
        now .. ':' .. ARGV[i + 9], dead_id,
        unlink(id), ARGV[i + 5])
    end
  else
    fenced[#fenced + 1] = eid
  end
end

if #settled > 0 then
  -- XDEL as well as XACK: the stream holds only unsettled work, so it is never
  -- trimmed by length (which would drop unread entries) and XLEN is the backlog.
  for i = 1, #settled, 500 do
    redis.call('XACK', stream, group, unpack(settled, i, math.min(i + 499, #settled)))
  end
  chunked('XDEL', stream, settled, 500)
  -- Start times are written only for jobs still running a second after they
  -- started: most settles find none.
  if redis.call('EXISTS', KEYS[10]) == 1 then chunked('HDEL', KEYS[10], settled, 500) end
  chunked('HSET', KEYS[4], records, 1000)
  chunked('ZADD', KEYS[5], finished, 1000)
  if #parked > 0 then
    local first = redis.call('ZRANGE', KEYS[6], 0, 0, 'WITHSCORES')
    chunked('ZADD', KEYS[6], parked, 1000)
    -- Schedulers sleep until the earliest due time they know; wake them for an earlier one.
    if not first[2] or soonest < tonumber(first[2]) then
      redis.call('SPUBLISH', KEYS[9], soonest)
    end
  end
  if completed > 0 then redis.call('HINCRBY', KEYS[2], 'completed', completed) end
  if failed > 0 then redis.call('HINCRBY', KEYS[2], 'failed', failed) end
  if expired > 0 then redis.call('HINCRBY', KEYS[2], 'expired', expired) end
  if deferred > 0 then redis.call('HINCRBY', KEYS[2], 'deferred', deferred) end
end
if #fenced > 0 then
  redis.call('HINCRBY', KEYS[2], 'fenced', #fenced)
end

-- Retention: drop records finished longer ago than the retention period, a
-- bounded number per call so a long idle spell never makes one call slow.
local old = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now_ms - tonumber(ARGV[3]),
  'LIMIT', 0, 500)
if #old > 0 then
  redis.call('HDEL', KEYS[4], unpack(old))
  redis.call('ZREM', KEYS[5], unpack(old))
end
-- And beyond the count kept, the oldest, as many per call as this one finished
-- (plus some, to catch up after the limit is lowered).
local keep = tonumber(ARGV[9])
if keep > 0 then
  local over = math.min(redis.call('ZCARD', KEYS[5]) - keep, #finished / 2 + 100)
  if over > 0 then
    local oldest = redis.call('ZRANGE', KEYS[5], 0, over - 1)
    redis.call('HDEL', KEYS[4], unpack(oldest))
    redis.call('ZREMRANGEBYRANK', KEYS[5], 0, over - 1)
  end
end

-- Dead letters are kept ARGV[10] ms and at most ARGV[11], the newest; checked when
-- this call wrote one, as only then do they grow, and at most as many per call as
-- it wrote plus some (to catch up after a limit is lowered). A letter goes with its
-- job's record (while that still names it), so a lookup, a listing and the counts
-- agree; a replay of it finds nothing.
local function job_of(fields)
  local named = {}
  for f = 1, #fields, 2 do named[fields[f]] = fields[f + 1] end
  if named['i'] then return named['i'] end
  -- Written before letters named their job: the envelope's first field is its id.
  local ok, envelope = pcall(cmsgpack.unpack, named['e'] or '')
  if ok and type(envelope) == 'table' and type(envelope[1]) == 'string' then
    return envelope[1]
  end
end

local function drop_letters(letters)
  for _, letter in ipairs(letters) do
    local eid = letter[1]
    redis.call('XDEL', KEYS[3], eid)
    local id = job_of(letter[2])
    local record = id and redis.call('HGET', KEYS[4], id)
    if record and Record.letter(record) == eid then
      redis.call('HDEL', KEYS[4], id)
    end
  end
  if #letters > 0 then redis.call('HINCRBY', KEYS[2], 'purged', #letters) end
end

if lettered > 0 then
  local bound = lettered + 100
  local keep_letters = tonumber(ARGV[11])
  if keep_letters > 0 then
    local over = math.min(redis.call('XLEN', KEYS[3]) - keep_letters, bound)
    if over > 0 then drop_letters(redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', over)) end
  end
  local kept_ms = tonumber(ARGV[10])
  -- Entry ids are Redis's clock at the XADD: those of letters older than kept_ms go.
  local before = now_ms - kept_ms - 1
  if kept_ms >= 0 and before >= 0 then
    drop_letters(redis.call('XRANGE', KEYS[3], '-', tostring(before), 'COUNT', bound))
  end
end
return {#settled, fenced}
