-- Read one job's record and, for a queued job, whether a worker holds it now.
-- KEYS[1] job hash, KEYS[2] stream; ARGV[1] group
-- Returns false, or {flat hash fields, holding consumer or '', deliveries}.
-- Done in one script so a job settled between the two reads cannot show as queued.
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return false end
local state, eid
for i = 1, #h, 2 do
  if h[i] == 's' then state = h[i + 1] elseif h[i] == 'e' then eid = h[i + 1] end
end
if state == 'queued' and eid then
  local p = redis.pcall('XPENDING', KEYS[2], ARGV[1], eid, eid, 1)
  if type(p) == 'table' and p[1] then
    return {h, p[1][2], p[1][4]}
  end
end
return {h, '', 0}
