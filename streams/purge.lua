-- Delete dead letters and the records of their jobs.
-- uses: record
-- KEYS[1] dead (the dead-letter stream), KEYS[2] jobs, KEYS[3] stats
-- ARGV: pairs of dead entry id, job id
-- Returns how many were purged. A record is dropped only while it still says
-- dead by this letter: a job replayed meanwhile keeps its live record.
local purged = 0
for i = 1, #ARGV, 2 do
  if redis.call('XDEL', KEYS[1], ARGV[i]) == 1 then
    purged = purged + 1
    local record = redis.call('HGET', KEYS[2], ARGV[i + 1])
    if record and Record.letter(record) == ARGV[i] then
      redis.call('HDEL', KEYS[2], ARGV[i + 1])
    end
  end
end
if purged > 0 then
  redis.call('HINCRBY', KEYS[3], 'purged', purged)
end
return purged
