-- wrk script: each request carries X-Forwarded-For with one of 10,000 client addresses
-- (10.0.0.0 - 10.0.39.15), cycling, so the balancer (which trusts 127.0.0.1 as a proxy in the
-- comparison script) rate-limits 10,000 distinct clients.
local n = 0
local thread_offset = 0
local counter = 0

function setup(thread)
  thread:set("thread_offset", counter * 5000)
  counter = counter + 1
end

function request()
  n = (n + 1) % 10000
  local i = (n + thread_offset) % 10000
  local ip = string.format("10.0.%d.%d", math.floor(i / 256), i % 256)
  return wrk.format("GET", "/", { ["X-Forwarded-For"] = ip })
end
