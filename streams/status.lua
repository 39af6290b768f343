-- Read one job's record and, for a queued job, whether a worker holds it now.
-- uses: record lookup
-- KEYS[1] jobs, KEYS[2] stream; ARGV[1] group, ARGV[2] its workspace ('':
-- any), then the stored ids it may have, in order (lookup.lua)
-- Returns false, or {stored id, record, holding consumer or '', deliveries,
-- envelope or ''} (a backlogged job's envelope is its record's tail).
-- Done in one script so a job settled between the reads cannot show as queued.
local id, record = Lookup.find(KEYS[1], ARGV[2], 3)
if not id then return false end
local r = Record.parse(record)
local eid = r.entry
if r.state == 'queued' and eid then
  -- The entry's envelope carries the errors of earlier attempts.
  local entry = redis.call('XRANGE', KEYS[2], eid, eid)
  local envelope = ''
  if entry[1] then envelope = entry[1][2][2] end
  local p = redis.pcall('XPENDING', KEYS[2], ARGV[1], eid, eid, 1)
  if type(p) == 'table' and p[1] then
    return {id, record, p[1][2], p[1][4], envelope}
  end
  return {id, record, '', 0, envelope}
end
return {id, record, '', 0, ''}
