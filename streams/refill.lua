-- After a read: the workspaces whose entries a worker took give their places in
-- the stream to their backlogs (admit.lua); for a function with rate limits, the
-- same call takes capacity for the jobs about to start (limits.lua), so the
-- limits cost no round trip of their own.
-- uses: record admit limits
-- KEYS[1] stream, KEYS[2] jobs, KEYS[3] backlog, KEYS[4] share, KEYS[5] stats,
-- KEYS[6] rate (the limiter state), KEYS[7] limits (overrides), KEYS[8] deferrals,
-- KEYS[9] deferlog
-- ARGV[1] group, ARGV[2] each workspace's share, ARGV[3] 1 when the read found the
-- stream drained (fewer entries than asked), ARGV[4] msgpack array of the
-- workspaces read, ARGV[5] msgpack array of the entries taken from each; with
-- limits, ARGV[6..13] global rate, workspace rate, burst, reservation horizons
-- (global, workspace), workspaces and jobs asked, seconds of deferlog kept
-- (Limits.take).
-- Returns what Limits.take returns ({} without limits).
local t = redis.call('TIME')
Admit.setup(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[2],
  tostring(t[1] * 1000 + math.floor(t[2] / 1000)))

-- Heal: with no unread entry in the stream, every workspace's count is 0. A count
-- gone wrong (a worker that died between its read and this call, a failover that
-- lost writes) is set right here, so no backlog waits behind entries that are not
-- there. Checked exactly, here, as the read that saw the stream drained ran earlier.
local function drained()
  local groups = redis.pcall('XINFO', 'GROUPS', KEYS[1])
  if type(groups) ~= 'table' then return false end
  for _, group in ipairs(groups) do
    local fields = {}
    for i = 1, #group, 2 do fields[group[i]] = group[i + 1] end
    if fields['name'] == ARGV[1] then
      return #redis.call('XRANGE', KEYS[1], '(' .. fields['last-delivered-id'], '+', 'COUNT', 1) == 0
    end
  end
  return false
end

if ARGV[3] == '1' and drained() then
  local fields = redis.call('HGETALL', KEYS[4])
  for i = 1, #fields, 2 do
    local workspace = fields[i]
    Admit.load(workspace, fields[i + 1])
    Admit.set(workspace, 0)
    -- Looked at even if not marked: the heal trusts no count.
    Admit.waiting[workspace] = true
    Admit.refill(workspace)
  end
else
  -- Every workspace's count in one HMGET, as a call per workspace cost more than
  -- the rest of the script with 100 workspaces per read (bench profile).
  local half = tonumber(ARGV[2]) / 2
  local names, read = cmsgpack.unpack(ARGV[4]), cmsgpack.unpack(ARGV[5])
  local before = #names > 0 and redis.call('HMGET', KEYS[4], unpack(names)) or {}
  for j, workspace in ipairs(names) do
    Admit.load(workspace, before[j])
    local left = math.max(0, Admit.counts[workspace] - read[j])
    Admit.set(workspace, left)
    -- Only a workspace down to half its share goes further (admit.lua).
    if left <= half then Admit.refill(workspace) end
  end
end
Admit.finish()
if ARGV[6] then
  return Limits.take(t, KEYS[6], KEYS[7], KEYS[8], KEYS[9], ARGV[6], ARGV[7], ARGV[8], ARGV[9],
    ARGV[10], ARGV[11], ARGV[12], ARGV[13])
end
return {}
