-- A consumer leaves the group: hand its unfinished entries back, then delete it.
-- uses: record admit
-- KEYS[1] stream, KEYS[2] jobs, KEYS[3] share (admit.lua), KEYS[4] started
-- (streams/started.py)
-- ARGV[1] group, ARGV[2] consumer, then pairs: entry id, job id
-- Returns {handed back, consumer deleted (1/0)}.
-- Each owned entry is re-added at the stream's tail with the same envelope (no
-- attempt charged) and the old one acknowledged and deleted, so any live worker's
-- blocked XREADGROUP gets it at once instead of after the visibility timeout.
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
-- Only the share counts are used (no backlog is let in here).
Admit.setup(stream, KEYS[2], nil, KEYS[3], nil, 0, '')
local handed = 0
for i = 3, #ARGV, 2 do
  local eid, id = ARGV[i], ARGV[i + 1]
  if #redis.call('XPENDING', stream, group, eid, eid, 1, consumer) == 1 then
    local entry = redis.call('XRANGE', stream, eid, eid)
    if #entry == 1 then
      local fields = entry[1][2]
      local fresh = redis.call('XADD', stream, '*', unpack(fields))
      -- Unread again: it counts against its workspace's share of the stream.
      if fields[4] then Admit.set(fields[4], Admit.unread(fields[4]) + 1) end
      local record = redis.call('HGET', KEYS[2], id)
      local r = record and Record.parse(record)
      if r then
        -- The record points at the new entry and when it was queued again.
        r.entry, r.backlog, r.priority, r.at = fresh, nil, nil, string.match(fresh, '^%d+')
        redis.call('HSET', KEYS[2], id, Record.format(r))
      end
      handed = handed + 1
    end
    redis.call('XACK', stream, group, eid)
    redis.call('XDEL', stream, eid)
    redis.call('HDEL', KEYS[4], eid)
  end
end
Admit.finish()
-- XGROUP DELCONSUMER drops a consumer's pending entries for good, so it runs only
-- here, where the pending list was just seen empty.
local deleted = 0
if #redis.call('XPENDING', stream, group, '-', '+', 1, consumer) == 0 then
  redis.call('XGROUP', 'DELCONSUMER', stream, group, consumer)
  deleted = 1
end
return {handed, deleted}
