-- Before jobs are published in their function's current layout: in their
-- workspace's partition of an earlier layout (streams.layouts), the ids that are
-- there already, and the business keys whose jobs there the new ones replace.
-- uses: record admit links
-- KEYS[1] stream, KEYS[2] stats, KEYS[3] jobs, KEYS[4] delayed, KEYS[5] keyed,
-- KEYS[6] tagged, KEYS[7] backlog, KEYS[8] share
-- ARGV[1] group, ARGV[2] each workspace's share of the stream (admit.lua), then
-- 2 per job: its stored id, its key field ("ws/key", or "")
-- Returns, per job, 1 when its id is a job here (a duplicate: nothing is done for
-- it), else 0. A job the key names here that has not started is removed, as
-- publish.lua replaces one (counted as replaced); one running or finished stays,
-- and the key leaves it, for the new job in the current layout.
local t = redis.call('TIME')
local now_text = tostring(t[1] * 1000 + math.floor(t[2] / 1000))
Admit.setup(KEYS[1], KEYS[3], KEYS[7], KEYS[8], KEYS[2], ARGV[2], now_text)
local out, replaced = {}, 0
for a = 3, #ARGV, 2 do
  local id, keyfield = ARGV[a], ARGV[a + 1]
  if redis.call('HEXISTS', KEYS[3], id) == 1 then
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
    local old = keyfield ~= '' and redis.call('HGET', KEYS[5], keyfield)
    if old then
      if Links.replace(KEYS[3], KEYS[4], KEYS[5], KEYS[6], old, ARGV[1]) then
        replaced = replaced + 1
      else
        redis.call('HDEL', KEYS[5], keyfield)
      end
    end
  end
end
Admit.finish()
if replaced > 0 then
  redis.call('HINCRBY', KEYS[2], 'replaced', replaced)
end
return out
