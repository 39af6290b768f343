-- Heartbeat: reset the idle time of entries this consumer still owns.
-- KEYS[1] stream; ARGV[1] group, ARGV[2] consumer, ARGV[3..] entry ids
-- Returns {ids another consumer owns now (reclaimed from this one), ids pending for
-- no one (settled: by this consumer meanwhile, or by one that took it over)}.
-- XCLAIM ... JUSTID resets idle time without counting a delivery; the ownership
-- check first keeps a heartbeat from stealing an entry back. An id pending for
-- nobody was settled while this call was on its way: neither extended nor lost.
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local mine, lost, gone = {}, {}, {}
for i = 3, #ARGV do
  local eid = ARGV[i]
  local p = redis.call('XPENDING', stream, group, eid, eid, 1)
  if p[1] and p[1][2] == consumer then
    mine[#mine + 1] = eid
  elseif p[1] then
    lost[#lost + 1] = eid
  else
    gone[#gone + 1] = eid
  end
end
-- The ids and JUSTID go in one table: in Lua, `unpack(t), 'JUSTID'` passes only
-- the first of the ids, which extended one held entry and let the rest be reclaimed.
for i = 1, #mine, 500 do
  local args = {'XCLAIM', stream, group, consumer, 0}
  for j = i, math.min(i + 499, #mine) do
    args[#args + 1] = mine[j]
  end
  args[#args + 1] = 'JUSTID'
  redis.call(unpack(args))
end
return {lost, gone}
