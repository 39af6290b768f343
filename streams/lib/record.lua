-- The job record: the only Lua that writes or reads one (the format is documented
-- in streams/record.py, its Python twin). Not run on its own; every script that
-- touches a record starts with this text (streams.lua.Script, `uses`).
--
-- Record.parse gives a table with named fields; where a script writes or reads a
-- record per job (publish, promote, refill, settle), a function doing just that
-- job's work, one concatenation or one match, keeps it as cheap as inline code.
-- Every field is kept as the text it was written as (a time may be
-- "2.53402300799e+14" in a record of an older release).
local Record = {}

-- A state as stored (one letter) and as named; a record written before the
-- letters names its state in full, and is read the same.
local CODE = {queued = 'q', delayed = 'd', completed = 'c', dead = 'x', cancelled = 'k',
  expired = 'e'}
local STATE = {}
for state, code in pairs(CODE) do
  STATE[code] = state
  STATE[state] = state
end

local FIELDS = '^(%a+)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$'

-- A record as a table: state, workspace, at, attempts, finished, dead, links, tail,
-- and its place under the name of what it is: `priority` (delayed), `backlog`
-- ("b<priority><sequence>", queued in its workspace's backlog) or `entry` (the
-- stream entry id). nil for anything that is not a record.
function Record.parse(s)
  local code, workspace, place, at, attempts, finished, dead, links, tail = string.match(s, FIELDS)
  local state = STATE[code]
  if not state then return nil end
  local r = {state = state, workspace = workspace, at = at, attempts = attempts,
    finished = finished, dead = dead, links = links, tail = tail}
  if state == 'delayed' then
    r.priority = place
  elseif string.sub(place, 1, 1) == 'b' then
    r.backlog = place
  else
    r.entry = place
  end
  return r
end

function Record.format(r)
  return CODE[r.state] .. '|' .. r.workspace .. '|' .. (r.entry or r.backlog or r.priority or '')
    .. '|' .. r.at .. '|' .. r.attempts .. '|' .. r.finished .. '|' .. r.dead .. '|' .. r.links
    .. '|' .. r.tail
end

-- A queued job at `place` (its stream entry id, or its backlog place), queued at
-- `at`; the tail is its envelope while in the backlog, else ''.
function Record.queued(workspace, place, at, attempts, links, tail)
  return 'q|' .. workspace .. '|' .. place .. '|' .. at .. '|' .. attempts .. '|0||' .. links .. '|'
    .. tail
end

-- A delayed job, due at `due` (Redis time, ms), with its envelope.
function Record.delayed(workspace, priority, due, attempts, links, envelope)
  return 'd|' .. workspace .. '|' .. priority .. '|' .. due .. '|' .. attempts .. '|0||' .. links
    .. '|' .. envelope
end

-- A job settled from its stream entry `eid` (completed, expired or dead) at
-- `finished`: the Redis time, and for a job that ran, ":" and how long its last
-- attempt ran (ms); it was queued when the entry was added (the entry id's time).
function Record.settled(state, workspace, eid, attempts, finished, dead, links, tail)
  return CODE[state] .. '|' .. workspace .. '|' .. eid .. '|' .. string.match(eid, '^%d+') .. '|'
    .. attempts .. '|' .. finished .. '|' .. dead .. '|' .. links .. '|' .. tail
end

function Record.state(s)
  return STATE[string.match(s, '^(%a+)|')]
end

function Record.workspace(s)
  return string.match(s, '^[^|]*|([^|]*)|')
end

-- A delayed job's workspace, priority, attempts, links and envelope; nil for any
-- other record. One written before priorities has none: normal.
function Record.delayed_job(s)
  local code, workspace, priority, attempts, links, envelope = string.match(s,
    '^(%a+)|([^|]*)|([^|]*)|[^|]*|([^|]*)|[^|]*||([^|]*)|(.*)$')
  if STATE[code] ~= 'delayed' then return nil end
  return workspace, priority == '' and '1' or priority, attempts, links, envelope
end

-- A job waiting in its workspace's backlog: its attempts, links and envelope; nil
-- for any other record.
function Record.backlogged_job(s)
  local code, attempts, links, envelope = string.match(s,
    '^(%a+)|[^|]*|b[^|]*|[^|]*|([^|]*)|[^|]*||([^|]*)|(.*)$')
  if STATE[code] ~= 'queued' then return nil end
  return attempts, links, envelope
end

-- The dead-letter entry id of a dead job's record; nil for any other record.
function Record.letter(s)
  local code, dead = string.match(s, '^(%a+)|[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|([^|]*)|')
  if STATE[code] ~= 'dead' then return nil end
  return dead
end
