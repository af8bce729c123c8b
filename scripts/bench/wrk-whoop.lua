-- wrk script: POSTs pre-signed WHOOP deliveries from a file, each exactly once.
-- Usage: wrk ... -s wrk-whoop.lua URL -- FILE THREADS
-- Each thread takes every THREADS-th line so no two requests repeat a trace_id.
local threads_started = 0
function setup(thread)
  thread:set("tid", threads_started)
  threads_started = threads_started + 1
end

local reqs, n, i, step = {}, 0, 0, 1
function init(args)
  step = tonumber(args[2] or "1")
  local k = 0
  for line in io.lines(args[1]) do
    if k % step == tid then
      local ts, sig, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
      n = n + 1
      reqs[n] = wrk.format("POST", "/webhooks/whoop", {
        ["content-type"] = "application/json",
        ["x-whoop-signature"] = sig,
        ["x-whoop-signature-timestamp"] = ts,
      }, body)
    end
    k = k + 1
  end
  i = 0
end

function request()
  i = i + 1
  if i > n then
    error("ran out of distinct requests; generate more")
  end
  return reqs[i]
end

local statuses = {}
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  io.write(string.format(
    "RESULT requests=%d seconds=%.2f rate=%.0f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f non2xx=%d socket_errors=%d\n",
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency:percentile(99.9) / 1000, latency.max / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
