-- Take over entries another consumer left pending longer than the visibility timeout.
-- KEYS[1] stream, KEYS[2] stats, KEYS[3] suspects (streams/suspects.py), KEYS[4] started
-- (streams/started.py)
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] min idle ms, ARGV[4] cursor, ARGV[5] count,
-- ARGV[6] idle ms after which a consumer holding nothing is deleted
-- Returns {next cursor, {{entry id, envelope, deliveries, starts}, ...}, lost, consumers deleted}
-- XAUTOCLAIM counts the delivery; the count is read back so the caller can cut
-- poison (a job that kills every worker never reaches the handler's retry path),
-- with how often its handler started since it was first taken over: a crash is
-- charged to the jobs that were running, not to all the dead process held.
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local out = {}
for i, entry in ipairs(r[2]) do
  local eid = entry[1]
  local fields = entry[2]
  local envelope = ''
  for f = 1, #fields, 2 do
    if fields[f] == 'e' then envelope = fields[f + 1] end
  end
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], eid, eid, 1)
  out[i] = {eid, envelope, p[1][4], tonumber(redis.call('HGET', KEYS[3], eid) or 0)}
end
-- Pending ids whose entries are gone: XAUTOCLAIM already dropped them from the
-- pending list; count them so the loss of an entry is visible, never silent.
local lost = #r[3]
if lost > 0 then
  redis.call('HINCRBY', KEYS[2], 'lost', lost)
end
-- A start written by the lost worker is not the new owner's: it writes its own
-- once its handler runs a while.
if redis.call('EXISTS', KEYS[4]) == 1 then
  for _, entry in ipairs(r[2]) do redis.call('HDEL', KEYS[4], entry[1]) end
  for _, eid in ipairs(r[3]) do redis.call('HDEL', KEYS[4], eid) end
end
-- Every worker process joins under a new name; without this, each deploy would
-- leave its consumers in the group for good. A consumer is deleted only here,
-- in the script that sees its pending list empty (DELCONSUMER drops pending
-- entries); a live one deleted while idle is recreated by its next read.
local forgotten = 0
local stale = tonumber(ARGV[6])
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local name, pending, idle
  for f = 1, #c, 2 do
    if c[f] == 'name' then name = c[f + 1]
    elseif c[f] == 'pending' then pending = c[f + 1]
    elseif c[f] == 'idle' then idle = c[f + 1] end
  end
  if pending == 0 and idle >= stale and name ~= ARGV[2] then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    forgotten = forgotten + 1
  end
end
return {r[1], out, lost, forgotten}
