-- Read one job's record and, for a queued job, whether a worker holds it now.
-- KEYS[1] job records, KEYS[2] stream; ARGV[1] group, ARGV[2] job id
-- Returns false, or {record, holding consumer or '', deliveries, envelope or ''}
-- (a backlogged job's envelope is its record's tail).
-- Done in one script so a job settled between the reads cannot show as queued.
local record = redis.call('HGET', KEYS[1], ARGV[2])
if not record then return false end
local state, eid = string.match(record, '^([^|]*)|[^|]*|([^|]*)|')
if state == 'queued' and string.sub(eid, 1, 1) ~= 'b' then
  -- The entry's envelope carries the errors of earlier attempts.
  local entry = redis.call('XRANGE', KEYS[2], eid, eid)
  local envelope = ''
  if entry[1] then envelope = entry[1][2][2] end
  local p = redis.pcall('XPENDING', KEYS[2], ARGV[1], eid, eid, 1)
  if type(p) == 'table' and p[1] then
    return {record, p[1][2], p[1][4], envelope}
  end
  return {record, '', 0, envelope}
end
return {record, '', 0, ''}
