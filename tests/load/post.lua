-- wrk script: POST the body file to a step of a shop picked at random
-- among KEFU_SHOPS shops (shop-1 .. shop-N), or to KEFU_PATH when set,
-- with the shared load key.
local shops = tonumber(os.getenv("KEFU_SHOPS") or "1")
local step = os.getenv("KEFU_STEP") or "greeting"
local f = assert(io.open(os.getenv("KEFU_BODY"), "rb"))
local body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("KEFU_LOAD_KEY")
math.randomseed(os.time())
if os.getenv("KEFU_PATH") then
  wrk.path = os.getenv("KEFU_PATH")
else
  request = function()
    local path = "/v1/shops/shop-" .. math.random(1, shops) .. "/" .. step
    return wrk.format(nil, path)
  end
end
-- Fail loudly on any non-200 answer, unless KEFU_ANY_STATUS is set (a
-- flood that expects refusals: no per-answer hook, wrk's cheapest path).
if not os.getenv("KEFU_ANY_STATUS") then
  response = function(status, headers, body)
    if status ~= 200 then
      io.stderr:write("non-200 answer: " .. status .. " " .. body .. "\n")
    end
  end
end
-- With KEFU_LATENCY_OUT set, append this run's latency histogram to that
-- file, one "microseconds count" line per distinct latency, so that
-- runs can be pooled (tests/load/pool.py) instead of their percentiles
-- compared one by one.
local histogram = os.getenv("KEFU_LATENCY_OUT")
if histogram then
  done = function(summary, latency, requests)
    local out = assert(io.open(histogram, "a"))
    for i = 1, #latency do
      local value, count = latency(i)
      out:write(string.format("%d %d\n", value, count))
    end
    out:close()
  end
end
