-- Business keys and tags (streams/keys.py `links`), shared by the scripts that end
-- or replace a job: publish, supersede, cancel, settle (streams.lua.Script,
-- `uses`). `Links.replace` needs record and admit before it (publish, supersede).
local Links = {}

-- A job gives up its business key (if the key still names it) and its tags.
-- `links` is "ws/key" or "", then " ws/tag/id" per tag.
function Links.release(keyed, tagged, links, id)
  local keyfield, members = string.match(links, '^(%S*) ?(.*)$')
  if keyfield ~= '' and redis.call('HGET', keyed, keyfield) == id then
    redis.call('HDEL', keyed, keyfield)
  end
  for m in string.gmatch(members, '%S+') do redis.call('ZREM', tagged, m) end
end

-- A business key names one live job: its job `old` that has not started is
-- removed (its unread entry or backlog place withdrawn, or its delayed place) with
-- its record and links; returns true then. One running or finished stays: false.
function Links.replace(jobs, delayed, keyed, tagged, old, group)
  local record = redis.call('HGET', jobs, old)
  local r = record and Record.parse(record)
  if not r then return false end
  if r.state == 'queued' then
    if not Admit.withdraw(r, old, group) then return false end
  elseif r.state == 'delayed' then
    redis.call('ZREM', delayed, old)
  else
    return false
  end
  redis.call('HDEL', jobs, old)
  Links.release(keyed, tagged, r.links, old)
  return true
end
