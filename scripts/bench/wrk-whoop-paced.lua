-- Like wrk-whoop.lua, but each connection waits DELAY_MS between requests, so that
-- CONNECTIONS / DELAY_MS * 1000 is the offered rate. Usage: ... -- FILE THREADS DELAY_MS
dofile(os.getenv("AUREN_BENCH_DIR") .. "/wrk-whoop.lua")
local base_init = init
local delay_ms = 0
function init(args)
  base_init(args)
  delay_ms = tonumber(args[3])
end
function delay()
  return delay_ms
end
