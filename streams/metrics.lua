-- Add a worker's metrics since its last flush to a function partition's totals.
-- KEYS[1] metrics (HASH); ARGV[1] how many counter pairs follow, then pairs
-- field, amount (HINCRBY); then triples for the per-second ring: scope
-- ("*" or a workspace), epoch second, jobs; then how many triples follow for the
-- function's per-minute ring: epoch minute, jobs processed, jobs failed; then
-- pairs scope, last processed ms.
-- The ring keeps one field per second of the minute ("<scope>|r|<second % 60>"
-- -> "<epoch second>:<jobs>"), so the last minute's throughput is a sum of 60
-- fields however many workers write. The minute ring, for the function only
-- ("*|m|<minute % 60>" -> "<epoch minute>:<processed>:<failed>"), is the last
-- hour's chart in 60 fields.
local pairs_end = 1 + 2 * tonumber(ARGV[1])
for i = 2, pairs_end, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
local i = pairs_end + 1
local ring_end = i + 3 * tonumber(ARGV[i])
for j = i + 1, ring_end, 3 do
  local scope, sec, jobs = ARGV[j], tonumber(ARGV[j + 1]), tonumber(ARGV[j + 2])
  local field = scope .. '|r|' .. (sec % 60)
  local held = redis.call('HGET', KEYS[1], field)
  local at, count = 0, 0
  if held then
    local a, c = string.match(held, '^(%d+):(%d+)$')
    at, count = tonumber(a), tonumber(c)
  end
  -- A slot holding a newer second (a late flush after an outage) is left alone.
  if at <= sec then
    if at < sec then count = 0 end
    redis.call('HSET', KEYS[1], field, sec .. ':' .. (count + jobs))
  end
end
i = ring_end + 1
local minutes_end = i + 3 * tonumber(ARGV[i])
for j = i + 1, minutes_end, 3 do
  local minute = tonumber(ARGV[j])
  local field = '*|m|' .. (minute % 60)
  local held = redis.call('HGET', KEYS[1], field)
  local at, processed, failed = 0, 0, 0
  if held then
    local a, p, f = string.match(held, '^(%d+):(%d+):(%d+)$')
    at, processed, failed = tonumber(a), tonumber(p), tonumber(f)
  end
  if at <= minute then
    if at < minute then processed, failed = 0, 0 end
    redis.call('HSET', KEYS[1], field,
      minute .. ':' .. (processed + ARGV[j + 1]) .. ':' .. (failed + ARGV[j + 2]))
  end
end
for j = minutes_end + 1, #ARGV, 2 do
  local field = ARGV[j] .. '|last'
  local last = tonumber(redis.call('HGET', KEYS[1], field) or 0)
  if tonumber(ARGV[j + 1]) > last then redis.call('HSET', KEYS[1], field, ARGV[j + 1]) end
end
return 1
