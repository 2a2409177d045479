-- wrk script: POST the benchmark's permitted transfer to Cerbos's
-- /api/check/resources (what tollgate-bench cerbos sends), a request id of
-- its own each time.
local counter = 0
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  wrk.method = "POST"
  wrk.path = "/api/check/resources"
  wrk.headers["content-type"] = "application/json"
end

function request()
  counter = counter + 1
  local rid = "bench-" .. id .. "-" .. counter
  local body = '{"requestId":"' .. rid .. '","principal":{"id":"agent-treasury","roles":["agent"],'
    .. '"attr":{"approved":true,"surfaces":["payments"]}},"resources":[{"actions":["transfer"],'
    .. '"resource":{"kind":"payments","id":"' .. rid .. '","attr":{"amount":500,"to":"acct-9","ticket":"OPS-1"}}}]}'
  return wrk.format(nil, nil, nil, body)
end
