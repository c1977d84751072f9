-- wrk script of bench/load.py: replays pre-formatted HTTP/1.1 requests from a file.
--   wrk ... -s bench/wrk_replay.lua http://127.0.0.1:PORT -- FILE ORDER SEED FIRST
-- FILE holds records "<byte length>\n<raw request>"; ORDER is "cycle" or "random".
-- Every "@@@@@@@@@@@@" in a request is replaced by a 12-hex-digit number unique to
-- that request (thread << 36 | counter, counting from FIRST), so bodies can carry fresh ids.
-- done() prints one line "WRKJSON {...}" that bench/load.py parses.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("thread_index", #threads)
  table.insert(threads, thread)
end

local reqs, marked, n, i, order = {}, {}, 0, 0, "cycle"
local MARK = "@@@@@@@@@@@@"

function init(args)
  local path = args[1]
  order = args[2] or "cycle"
  math.randomseed(tonumber(args[3] or "1") + (thread_index or 0))
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  local pos = 1
  while pos <= #data do
    local nl = data:find("\n", pos, true)
    local len = tonumber(data:sub(pos, nl - 1))
    n = n + 1
    reqs[n] = data:sub(nl + 1, nl + len)
    marked[n] = reqs[n]:find(MARK, 1, true) ~= nil
    pos = nl + 1 + len
  end
  counter = (thread_index or 0) * 68719476736 + tonumber(args[4] or "1") - 1  -- 2^36
end

function request()
  if order == "random" then
    i = math.random(n)
  else
    i = i + 1
    if i > n then i = 1 end
  end
  if marked[i] then
    counter = counter + 1
    return (reqs[i]:gsub(MARK, string.format("%012x", counter)))
  end
  return reqs[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"errors":%d,"status_errors":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout + e.status,
    e.status, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
