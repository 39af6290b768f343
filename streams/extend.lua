-- Heartbeat: reset the idle time of entries this consumer still owns.
-- KEYS[1] stream; ARGV[1] group, ARGV[2] consumer, ARGV[3..] entry ids
-- Returns the ids it no longer owns (reclaimed by another consumer).
-- XCLAIM ... JUSTID resets idle time without counting a delivery; the ownership
-- check first keeps a heartbeat from stealing an entry back.
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local mine, lost = {}, {}
for i = 3, #ARGV do
  local eid = ARGV[i]
  if #redis.call('XPENDING', stream, group, eid, eid, 1, consumer) == 1 then
    mine[#mine + 1] = eid
  else
    lost[#lost + 1] = eid
  end
end
for i = 1, #mine, 500 do
  redis.call('XCLAIM', stream, group, consumer, 0,
    unpack(mine, i, math.min(i + 499, #mine)), 'JUSTID')
end
return lost
