-- wrk script for benches/load.sh: POSTs a fixed body with fixed headers,
-- counts every response by status and checks that 2xx bodies are complete,
-- then prints one machine-readable RESULT line (latencies in microseconds).
--
-- wrk -s wrk.lua URL -- body=FILE header=Name:Value ... [marker=TEXT]
--   body=FILE      request body (POST)
--   header=N:V     request header (repeatable)
--   marker=TEXT    a 2xx body not containing TEXT counts as bad (truncated
--                  streams, wrong format); default: no check

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   ok, bad, incomplete = 0, 0, 0
   last_status, last_body = 0, ""
   marker = nil
   local headers = {}
   local body = nil
   for _, a in ipairs(args) do
      local k, v = a:match("^([%w_]+)=(.*)$")
      if k == "body" then
         local f = assert(io.open(v, "rb"))
         body = f:read("*a")
         f:close()
      elseif k == "header" then
         local n, val = v:match("^([^:]+):%s*(.*)$")
         headers[n] = val
      elseif k == "marker" and v ~= "" then
         marker = v
      end
   end
   wrk.method = "POST"
   wrk.body = body
   for n, val in pairs(headers) do
      wrk.headers[n] = val
   end
   if body then
      wrk.headers["Content-Length"] = tostring(#body)
   end
end

function response(status, headers, body)
   if status >= 200 and status < 300 then
      if marker and not body:find(marker, 1, true) then
         incomplete = incomplete + 1
         last_status, last_body = status, body
      else
         ok = ok + 1
      end
   else
      bad = bad + 1
      last_status, last_body = status, body
   end
end

function done(summary, latency, requests)
   local o, b, inc, ls, lb = 0, 0, 0, 0, ""
   for _, t in ipairs(threads) do
      o = o + t:get("ok")
      b = b + t:get("bad")
      inc = inc + t:get("incomplete")
      local s = t:get("last_status")
      if s ~= 0 then
         ls, lb = s, t:get("last_body")
      end
   end
   local e = summary.errors
   io.write(string.format(
      "RESULT requests=%d duration_us=%d bytes=%d ok=%d non2xx=%d incomplete=%d " ..
      "err_connect=%d err_read=%d err_write=%d err_timeout=%d " ..
      "lat_mean_us=%.1f lat_p50_us=%d lat_p90_us=%d lat_p99_us=%d lat_p999_us=%d lat_max_us=%d\n",
      summary.requests, summary.duration, summary.bytes, o, b, inc,
      e.connect, e.read, e.write, e.timeout,
      latency.mean, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9), latency.max))
   if ls ~= 0 then
      lb = lb:sub(1, 300):gsub("[\r\n]", " ")
      io.write(string.format("LASTBAD status=%d body=%s\n", ls, lb))
   end
end
