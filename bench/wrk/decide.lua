-- wrk script: POST the benchmark's permitted transfer to /v1/decisions (what
-- tollgate-bench gate sends), each request with an idempotency key of its
-- own (a repeated key is answered from the log, not decided). `tollgate-bench
-- wrk` runs it; by hand:
--   TOLLGATE_TOKEN=... wrk -t2 -c64 -d10s -s bench/wrk/decide.lua http://127.0.0.1:PORT
-- Keys are bench-<run>-<thread>-<n>; <run> (TOLLGATE_RUN, default the time)
-- keeps runs against the same gate apart. No response() hook: it would make
-- wrk copy every answer into Lua, taking CPU from the server it measures;
-- wrk counts answers other than 2xx itself ("Non-2xx or 3xx responses").
local counter = 0
local threads = {}
local run = os.getenv("TOLLGATE_RUN") or tostring(os.time())
local token = os.getenv("TOLLGATE_TOKEN") or error("set TOLLGATE_TOKEN")

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  wrk.method = "POST"
  wrk.path = "/v1/decisions"
  wrk.headers["content-type"] = "application/json"
  wrk.headers["authorization"] = "Bearer " .. token
end

function request()
  counter = counter + 1
  local body = '{"actor":{"id":"agent-treasury","kind":"agent"},"surface":"payments",'
    .. '"action":"transfer","target":{"amount":500,"to":"acct-9"},'
    .. '"context":{"ticket":"OPS-1"},"idempotency_key":"bench-' .. run .. '-' .. id .. '-' .. counter .. '"}'
  return wrk.format(nil, nil, nil, body)
end
