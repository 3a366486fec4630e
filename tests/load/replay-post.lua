-- wrk script: POST no-reason return requests to the tea-oil shop's refund
-- step, each delivered a random 1 to 20 days ago and for a random amount,
-- so that the log a replay reads is varied (see replay.sh).
local f = assert(io.open(os.getenv("KEFU_BODY"), "rb"))
local template = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("KEFU_LOAD_KEY")
wrk.path = "/v1/shops/tea-oil/refund-decision"
math.randomseed(os.time())
local n = 0
request = function()
  n = n + 1
  local day = math.random(1, 20)
  local amount = math.random(1000, 30000)
  local body = template
    :gsub("__DELIVERED__", tostring(os.time() - day * 86400 + 3600))
    :gsub("__AMOUNT__", tostring(amount))
    :gsub("__ORDER__", "order-" .. n .. "-" .. math.random(1, 1000000))
  return wrk.format(nil, nil, nil, body)
end
response = function(status, headers, body)
  if status ~= 200 then
    io.stderr:write("non-200 answer: " .. status .. " " .. body .. "\n")
  end
end
