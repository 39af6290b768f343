-- The jobs of a function with several partitions that its global limit
-- (global_limit.lua, in a slot of its own) held back, noted in their partition's
-- records of deferrals as limits.lua notes the jobs it holds back itself.
-- uses: limits
-- KEYS[1] deferrals, KEYS[2] deferlog
-- ARGV[1] the global rate (jobs/s), ARGV[2] seconds of deferlog kept, ARGV[3]
-- msgpack array of workspaces, ARGV[4] of the jobs each asked for, ARGV[5] of
-- the jobs of each held back, ARGV[6] of the jobs asked each one's deferlog gains
-- (0 where the partition's refill logged the read already).
local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
local rate, keep = tonumber(ARGV[1]), tonumber(ARGV[2])
local asked, held, logged = cmsgpack.unpack(ARGV[4]), cmsgpack.unpack(ARGV[5]), cmsgpack.unpack(ARGV[6])
for j, workspace in ipairs(cmsgpack.unpack(ARGV[3])) do
  Limits.note(KEYS[1], KEYS[2], workspace, now_ms, asked[j], held[j], 'global', rate, keep, logged[j])
end
return 1
