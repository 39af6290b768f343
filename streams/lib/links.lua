-- Business keys and tags (streams/keys.py `links`), shared by the scripts that end
-- or replace a job: publish, cancel, settle (streams.lua.Script, `uses`).
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
