-- Read one job's record and, for a queued job, whether a worker holds it now.
-- uses: record lookup
-- KEYS[1] jobs, KEYS[2] stream, KEYS[3] dead, KEYS[4] started; ARGV[1] group, ARGV[2] its
-- workspace ('': any), then the stored ids it may have, in order (lookup.lua)
-- Returns false, or {stored id, record, holding consumer or '', deliveries,
-- envelope or '', when its handler started (ms, 0: not known)}: the envelope is a
-- queued job's entry's, or a dead job's letter's while it is kept (a delayed or
-- backlogged job's envelope is its record's tail); the start, an active job's
-- that ran past its worker's last metrics flush (streams/started.py).
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
    local started = redis.call('HGET', KEYS[4], eid)
    return {id, record, p[1][2], p[1][4], envelope, tonumber(started) or 0}
  end
  return {id, record, '', 0, envelope, 0}
end
if r.state == 'dead' and r.dead ~= '' then
  -- The letter holds the job's input: shown until it is replayed or purged.
  local letter = redis.call('XRANGE', KEYS[3], r.dead, r.dead)
  if letter[1] then
    for i = 1, #letter[1][2], 2 do
      if letter[1][2][i] == 'e' then return {id, record, '', 0, letter[1][2][i + 1], 0} end
    end
  end
end
return {id, record, '', 0, '', 0}
