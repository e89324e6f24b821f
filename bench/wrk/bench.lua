-- wrk script of the bench: builds the requests of one scenario and, when the run ends, prints ONE line
-- "WRK_JSON {...}" with the counts and latency percentiles, which bench/loadgen.py parses.
--
-- Arguments (after `--`):
--   get  PATH                 GET PATH, always the same
--   ids  PREFIX MAX           GET PREFIX<n>, n uniform in [1, MAX] (a different row each request)
--   ids-via-application PREFIX MAX
--                             the same GETs with a Connection header that names a hop-by-hop header of its own,
--                             which makes the gateway's front hand them to the application instead of sending them
--                             straight to the inventory (srcs/api-gateway/app/front.py): the path every write takes
--   post PATH BODY            POST BODY (JSON) to PATH
-- wrk counts a response with status >= 400 as a status error; the reporter adds them to `errors`.

local mode, arg1, arg2
local counter = 0

function init(args)
  mode, arg1, arg2 = args[1], args[2], args[3]
  if mode == "ids-via-application" then
    mode = "ids"
    wrk.headers["Connection"] = "keep-alive, X-Bench-Hop"
    wrk.headers["X-Bench-Hop"] = "1"
  end
  if mode == "ids" then
    -- Each thread draws its own sequence; seeding with the thread's table address keeps them apart.
    math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 100000)
    arg2 = tonumber(arg2)
  elseif mode == "post" then
    wrk.method = "POST"
    wrk.body = arg2
    wrk.headers["Content-Type"] = "application/json"
  elseif mode ~= "get" then
    error("bench.lua: unknown mode " .. tostring(mode))
  end
end

function request()
  if mode == "ids" then
    return wrk.format("GET", arg1 .. math.random(1, arg2))
  end
  return wrk.format(nil, arg1)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, "total": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
