-- Put dead letters back in the stream as fresh jobs.
-- uses: record admit
-- KEYS[1] dead (the dead-letter stream), KEYS[2] stream, KEYS[3] jobs, KEYS[4] stats,
-- KEYS[5] keyed, KEYS[6] tagged, KEYS[7] backlog, KEYS[8] share
-- ARGV[1] each workspace's share of the stream (admit.lua), then 6 per letter:
-- dead entry id, job id, workspace, envelope for the replay, links (its business
-- key and tags, taken up again: see streams/keys.py), priority
-- Returns how many were replayed. A letter already replayed or purged (by a
-- concurrent call) is gone from the dead-letter stream and skipped, so one
-- letter never becomes two jobs.
local t = redis.call('TIME')
local now = tostring(t[1] * 1000 + math.floor(t[2] / 1000))
Admit.setup(KEYS[2], KEYS[3], KEYS[7], KEYS[8], KEYS[4], ARGV[1], now)
local replayed = 0
for i = 2, #ARGV, 6 do
  if redis.call('XDEL', KEYS[1], ARGV[i]) == 1 then
    local id, links, envelope = ARGV[i + 1], ARGV[i + 4], ARGV[i + 3]
    local place, entered = Admit.enter(ARGV[i + 2], id, ARGV[i + 5], envelope)
    redis.call('HSET', KEYS[3], id,
      Record.queued(ARGV[i + 2], place, now, '0', links, entered and '' or envelope))
    local keyfield, members = string.match(links, '^(%S*) ?(.*)$')
    -- The key is taken back only if no newer job has claimed it meanwhile.
    if keyfield ~= '' then redis.call('HSETNX', KEYS[5], keyfield, id) end
    for m in string.gmatch(members, '%S+') do redis.call('ZADD', KEYS[6], 0, m) end
    replayed = replayed + 1
  end
end
Admit.finish()
if replayed > 0 then
  redis.call('HINCRBY', KEYS[4], 'replayed', replayed)
end
return replayed
