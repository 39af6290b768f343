-- A job asked for by id within a workspace (streams/keys.py `job_ref`), shared
-- by the scripts that act on one job by id (streams.lua.Script, `uses`).
-- uses: record
local Lookup = {}

-- The first of ARGV[first..] that is a job of `workspace` ('': any) in the
-- records `jobs`: its stored id and record, or nil. The workspace is checked
-- because a generated id is looked up as it is, and may be another tenant's.
function Lookup.find(jobs, workspace, first)
  for i = first, #ARGV do
    local record = redis.call('HGET', jobs, ARGV[i])
    if record and (workspace == '' or Record.workspace(record) == workspace) then
      return ARGV[i], record
    end
  end
  return nil
end
