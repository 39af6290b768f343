-- Replace a schedule only while it is still the one the caller read, so a pause
-- or resume never undoes a replacement written meanwhile.
-- KEYS[1] repeats
-- ARGV[1] field ("workspace/name"), ARGV[2] the schedule as read, ARGV[3] the new one
-- Returns 1 if written, 0 if the schedule changed or is gone.
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
