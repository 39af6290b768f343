-- Admission: how a job enters a partition's stream. Not run on its own; the
-- scripts that queue jobs (publish, promote, replay, cancel, refill) start with
-- this text (streams.lua.Script, `uses`).
-- uses: record
--
-- Fairness: each workspace keeps at most `limit` unread entries in the stream.
-- A job beyond that waits in the partition's backlog, and enters the stream as
-- workers read the workspace's entries (refill.lua). So one workspace's campaign
-- puts at most `limit` entries ahead of another workspace's next job, however
-- long its backlog.
--
-- Priorities: the backlog is one ZSET (all scores 0) of members
-- "workspace|<priority><sequence>|job id", priority 0 high, 1 normal, 2 low, so
-- a workspace's backlog is one lexicographic range, in priority order, then
-- publish order. A refill takes that order, except that low jobs get one place
-- in five when there are more high and normal ones than places, so low never
-- starves behind a stream of normal jobs.
--
-- The backlog is let in half a share at a time: a workspace's entries are topped
-- up to `limit` once at most half of them are left unread, so the cost of
-- finding its backlog is shared by many jobs, not paid per job read.
--
-- The share HASH holds per workspace "<unread entries>", with "+" after it while
-- the workspace may have a backlog: so a read of a workspace without one costs
-- no look at the backlog. A workspace with a backlog always has a field, which is
-- how refill.lua finds every backlog when it heals the counts.
--
-- Jobs entering the backlog are added to it in one ZADD when the script next
-- looks at the backlog or finishes, not one ZADD each: a flood of one workspace
-- puts every job of a publish there.
local Admit = {}

-- `group`: for the scripts that may write a stream first (publish, promote), the
-- consumer group to make with it (see ensure_group); nil where it exists already.
function Admit.setup(stream, jobs, backlog, share, stats, limit, now_text, group)
  Admit.stream, Admit.jobs, Admit.backlog, Admit.share, Admit.stats = stream, jobs, backlog,
    share, stats
  Admit.limit, Admit.now, Admit.group, Admit.grouped = tonumber(limit), now_text, group, false
  Admit.counts, Admit.waiting, Admit.changed, Admit.seq = {}, {}, {}, nil
  -- Backlog members not yet added: score ('0', not 0: Redis would format a Lua
  -- number with printf), member, and so on.
  Admit.entering = {}
end

-- Add the jobs that entered the backlog since the last look at it.
local function add_entering()
  local entering = Admit.entering
  for i = 1, #entering, 1000 do
    redis.call('ZADD', Admit.backlog, unpack(entering, i, math.min(i + 999, #entering)))
  end
  Admit.entering = {}
end

-- Take a workspace's field of the share HASH (a string, or false for none).
function Admit.load(workspace, value)
  local n, plus = string.match(value or '0', '^(%d+)(%+?)$')
  Admit.counts[workspace] = tonumber(n or '0')
  Admit.waiting[workspace] = plus == '+'
end

-- Unread entries of `workspace`: read once per call, then kept here until finish().
function Admit.unread(workspace)
  if Admit.counts[workspace] == nil then
    Admit.load(workspace, redis.call('HGET', Admit.share, workspace))
  end
  return Admit.counts[workspace]
end

-- Set a workspace's count, to be written back by finish().
function Admit.set(workspace, n)
  Admit.unread(workspace)
  Admit.counts[workspace] = n
  Admit.changed[workspace] = true
end

-- The group is made where the stream is first written, at id 0 (every entry is
-- read), not only by the first worker: a full Redis refuses XGROUP CREATE, so jobs
-- published before any worker ran could fill Redis and no worker could join to
-- drain them. Written now, while Redis has room (a publish is refused when full,
-- before its first write). Looked at once per call: one EXISTS and one XINFO.
local function ensure_group()
  if Admit.group == nil or Admit.grouped then return end
  Admit.grouped = true
  if redis.call('EXISTS', Admit.stream) == 1 then
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', Admit.stream)) do
      for f = 1, #g, 2 do
        if g[f] == 'name' and g[f + 1] == Admit.group then return end
      end
    end
  end
  redis.call('XGROUP', 'CREATE', Admit.stream, Admit.group, '0', 'MKSTREAM')
end

function Admit.add_stream_entry(workspace, envelope)
  ensure_group()
  Admit.set(workspace, Admit.unread(workspace) + 1)
  return redis.call('XADD', Admit.stream, '*', 'e', envelope, 'w', workspace)
end

-- The backlog member of a job, from its place ("b<priority><sequence>") and id.
local function member(workspace, place, id)
  return workspace .. '|' .. string.sub(place, 2) .. '|' .. id
end

-- Queue one job: returns its place, and true when that is a stream entry id; else
-- the place is "b<priority><sequence>" in the backlog, where the caller keeps the
-- envelope in the job's record tail until a refill moves it to the stream. While
-- the workspace has a backlog, a job goes behind it (or, high, before its normal
-- ones), never past it.
function Admit.enter(workspace, id, priority, envelope)
  if Admit.unread(workspace) < Admit.limit and not Admit.waiting[workspace] then
    return Admit.add_stream_entry(workspace, envelope), true
  end
  if Admit.seq == nil then
    Admit.seq = tonumber(redis.call('HGET', Admit.stats, 'backlogged') or '0')
  end
  Admit.seq = Admit.seq + 1
  Admit.waiting[workspace] = true
  Admit.changed[workspace] = true
  local place = 'b' .. priority .. string.format('%012d', Admit.seq)
  local entering = Admit.entering
  entering[#entering + 1] = '0'
  entering[#entering + 1] = member(workspace, place, id)
  return place, false
end

local function range(workspace, from, to, count)
  add_entering()
  return redis.call('ZRANGEBYLEX', Admit.backlog, '[' .. workspace .. '|' .. from,
    '(' .. workspace .. '|' .. to, 'LIMIT', 0, count)
end

local function priority_of(entry, workspace)
  return string.byte(entry, #workspace + 2) - 48
end

-- Move jobs of `workspace` from the backlog to the stream until it has `limit`
-- unread entries again, in weighted priority order.
function Admit.refill(workspace)
  local room = Admit.limit - Admit.unread(workspace)
  if room <= 0 or not Admit.waiting[workspace] then return end
  local taken = range(workspace, 0, 3, room)
  if #taken < room then
    -- All of it fits: the workspace has no backlog left.
    Admit.waiting[workspace] = false
    Admit.changed[workspace] = true
  elseif priority_of(taken[room], workspace) < 2 then
    -- Full of high and normal jobs: low ones, if any wait, get their turn in five.
    local low = range(workspace, 2, 3, math.max(1, math.floor(room / 5)))
    if #low > 0 then
      local keep = room - #low
      -- High jobs always keep their places.
      while keep < #taken and priority_of(taken[keep + 1], workspace) == 0 do keep = keep + 1 end
      for i = #taken, keep + 1, -1 do taken[i] = nil end
      for i = 1, math.min(#low, room - keep) do taken[#taken + 1] = low[i] end
    end
  end
  if #taken == 0 then return end
  local records = {}
  for _, entry in ipairs(taken) do
    local id = string.match(entry, '|[^|]*|(.*)$')
    local record = redis.call('HGET', Admit.jobs, id)
    local attempts, links, envelope
    if record then attempts, links, envelope = Record.backlogged_job(record) end
    -- A member without its backlogged record is a leftover: dropped, not run.
    if envelope then
      local eid = Admit.add_stream_entry(workspace, envelope)
      records[#records + 1] = id
      records[#records + 1] = Record.queued(workspace, eid, Admit.now, attempts, links, '')
    end
  end
  redis.call('ZREM', Admit.backlog, unpack(taken))
  if #records > 0 then redis.call('HSET', Admit.jobs, unpack(records)) end
end

-- `n` unread entries of `workspace` left the stream (read, or deleted unread):
-- once half its share is free, the backlog fills the places.
function Admit.left(workspace, n)
  local left = math.max(0, Admit.unread(workspace) - n)
  Admit.set(workspace, left)
  if left <= Admit.limit / 2 then Admit.refill(workspace) end
end

-- Take the queued job `id` (its record parsed: Record.parse) out before any worker
-- has it: from the backlog, or its unread stream entry (whose place the backlog
-- then fills). False, changing nothing, when a worker holds it (the entry is pending).
function Admit.withdraw(record, id, group)
  local workspace = record.workspace
  if record.backlog then
    add_entering()
    redis.call('ZREM', Admit.backlog, member(workspace, record.backlog, id))
    return true
  end
  local eid = record.entry
  -- pcall: a stream an earlier release wrote before any worker ran has no group
  -- (ensure_group makes it with the stream now), and nothing is pending there.
  local p = redis.pcall('XPENDING', Admit.stream, group, eid, eid, 1)
  if type(p) == 'table' and #p == 1 then return false end
  redis.call('XDEL', Admit.stream, eid)
  Admit.left(workspace, 1)
  return true
end

-- Write the changed counts and the entering backlog members, in one HSET, one
-- HDEL and one ZADD; a workspace with none unread and no backlog drops out.
function Admit.finish()
  add_entering()
  local set, gone = {}, {}
  for workspace in pairs(Admit.changed) do
    local n, plus = Admit.counts[workspace], Admit.waiting[workspace]
    if n > 0 or plus then
      set[#set + 1] = workspace
      set[#set + 1] = plus and (n .. '+') or n
    else
      gone[#gone + 1] = workspace
    end
  end
  if #set > 0 then redis.call('HSET', Admit.share, unpack(set)) end
  if #gone > 0 then redis.call('HDEL', Admit.share, unpack(gone)) end
  if Admit.seq ~= nil then
    redis.call('HSET', Admit.stats, 'backlogged', string.format('%d', Admit.seq))
  end
end
