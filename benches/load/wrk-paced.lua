-- Fixed-rate variant of wrk.lua: the same requests and checks, sent on a
-- schedule of rate=N requests per second (per wrk thread; load.sh uses -t1).
--
-- wrk's delay() hook is asked before every request; each call takes the next
-- slot of a fixed schedule (t0, t0 + 1/N, t0 + 2/N, ...) and waits until it.
-- Slots are absolute, so rounding to wrk's millisecond timers never drifts
-- the rate. Latency is measured by wrk from the moment the request is
-- written; with enough connections (load.sh: 8 at 200/s, i.e. 40 ms of
-- budget per connection) a slow answer delays only its own connection's
-- next slot, so the open-loop schedule holds unless all connections stall.

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "wrk.lua")

local ffi = require("ffi")
ffi.cdef [[
   typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
   int clock_gettime(int clk, bench_timespec *ts);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
   ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
   return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local base_init = init
local interval = 5
local next_slot = nil

function init(args)
   base_init(args)
   for _, a in ipairs(args) do
      local r = a:match("^rate=(.*)$")
      if r then
         interval = 1000 / tonumber(r)
      end
   end
end

function delay()
   local now = now_ms()
   if next_slot == nil then
      next_slot = now
   end
   local wait = next_slot - now
   next_slot = next_slot + interval
   if wait <= 0 then
      return 0
   end
   return math.floor(wait + 0.5)
end
