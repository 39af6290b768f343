-- Settle a batch of handled jobs of one function partition in one call.
-- KEYS[1] stream, KEYS[2] stats, KEYS[3] dead-letter stream, KEYS[3+i] job hash of job i
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] retention ms,
-- ARGV[4] pending scan limit, then 5 per job: entry id, state (completed|failed|dead),
-- attempt, error, envelope (only for dead; empty otherwise)
-- Returns {settled, {fenced entry ids}}.
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local retention = ARGV[3]
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)

-- Fence: settle only entries still pending for this consumer. A worker that froze
-- past its visibility timeout lost its jobs to another consumer; its late result
-- must not overwrite theirs. One scan of the consumer's own pending list (what
-- it holds) covers the batch; past its limit, an id is checked on its own.
local limit = tonumber(ARGV[4])
local scan = redis.call('XPENDING', stream, group, '-', '+', limit, consumer)
local owned = {}
for _, p in ipairs(scan) do owned[p[1]] = true end
local complete = #scan < limit

local function unpack_chunked(cmd, ids)
  for i = 1, #ids, 500 do
    redis.call(cmd, stream, group, unpack(ids, i, math.min(i + 499, #ids)))
  end
end

local settled, fenced = {}, {}
local counts = {completed = 0, failed = 0, dead = 0}
for i = 1, #KEYS - 3 do
  local base = 4 + (i - 1) * 5
  local eid, state = ARGV[base + 1], ARGV[base + 2]
  local mine = owned[eid]
  if not mine and not complete then
    mine = #redis.call('XPENDING', stream, group, eid, eid, 1, consumer) == 1
  end
  if mine then
    local job = KEYS[3 + i]
    settled[#settled + 1] = eid
    counts[state] = counts[state] + 1
    if state == 'completed' then
      redis.call('HSET', job, 's', state, 'a', ARGV[base + 3], 'f', now)
    else
      redis.call('HSET', job, 's', state, 'a', ARGV[base + 3], 'f', now, 'err', ARGV[base + 4])
    end
    if state == 'dead' then
      local did = redis.call('XADD', KEYS[3], '*', 'e', ARGV[base + 5], 'r', ARGV[base + 4])
      -- A dead job's record lives as long as its dead letter: no expiry.
      redis.call('HSET', job, 'd', did)
      redis.call('PERSIST', job)
    else
      redis.call('PEXPIRE', job, retention)
    end
  else
    fenced[#fenced + 1] = eid
  end
end

if #settled > 0 then
  -- XDEL as well as XACK: the stream holds only unsettled work, so it is never
  -- trimmed by length (which would drop unread entries) and XLEN is the backlog.
  unpack_chunked('XACK', settled)
  for i = 1, #settled, 500 do
    redis.call('XDEL', stream, unpack(settled, i, math.min(i + 499, #settled)))
  end
  for state, c in pairs(counts) do
    if c > 0 then redis.call('HINCRBY', KEYS[2], state, c) end
  end
end
if #fenced > 0 then
  redis.call('HINCRBY', KEYS[2], 'fenced', #fenced)
end
return {#settled, fenced}
