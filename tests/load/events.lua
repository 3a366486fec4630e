-- wrk script: POST workflow events to KEFU_PATH, KEFU_BATCH (default 1)
-- per request, each a copy of the KEFU_BODY template with `__ID__`
-- replaced by a new id (and so a new buyer: one subject per event). With
-- KEFU_DELAY_MS each connection waits that long between requests: an
-- offered rate of about connections x 1000 / delay requests per second.
-- The connections' first requests are spread over that delay (KEFU_CONNS
-- connections in all over KEFU_THREADS wrk threads), so that their
-- requests take turns instead of landing together: otherwise every
-- connection sends at once, again and again, and 6 batches of 100 arrive
-- as one burst of 600.
local template
do
  local f = assert(io.open(os.getenv("KEFU_BODY"), "rb"))
  template = f:read("*a")
  f:close()
end
local batch = tonumber(os.getenv("KEFU_BATCH") or "1")
local wait = tonumber(os.getenv("KEFU_DELAY_MS") or "0")
local conns = tonumber(os.getenv("KEFU_CONNS") or "1")
local nthreads = tonumber(os.getenv("KEFU_THREADS") or "1")
local calls = 0
if wait > 0 then
  delay = function()
    calls = calls + 1
    if calls <= math.ceil(conns / nthreads) then
      return math.floor(wait * ((calls - 1) * nthreads + tid - 1) / conns)
    end
    return wait
  end
end
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local n = 0
wrk.method = "POST"
wrk.path = os.getenv("KEFU_PATH")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("KEFU_LOAD_KEY")
request = function()
  local parts = {}
  for i = 1, batch do
    n = n + 1
    parts[i] = template:gsub("__ID__", os.getenv("KEFU_RUN") .. "-" .. tid .. "-" .. n)
  end
  local body = parts[1]
  if batch > 1 then
    body = "[" .. table.concat(parts, ",") .. "]"
  end
  return wrk.format(nil, nil, nil, body)
end
response = function(status, headers, body)
  if status ~= 202 and status ~= 200 then
    io.stderr:write("unexpected answer: " .. status .. " " .. body .. "\n")
  end
end
