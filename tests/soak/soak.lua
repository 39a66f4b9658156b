-- wrk script of `make soak` (tests/soak/soak.py): mixed traffic through
-- Envoy A (encrypts) and Envoy B (decrypts), paced by SOAK_DELAY_MS per
-- connection, checked per response, one result line at the end.
--
-- Mix, in every 10 requests: 4 POST a PII document (request fields
-- encrypted by A, decrypted by B), 3 GET an order (response fields
-- encrypted by B, decrypted by A), 3 GET an unprotected path.
local f = assert(io.open(os.getenv("SOAK_BODY"), "rb"))
local body = f:read("*a")
f:close()
local email = os.getenv("SOAK_EMAIL")
local delay_ms = tonumber(os.getenv("SOAK_DELAY_MS") or "0")
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  i = 0
  bad = 0       -- a protected response that is not the plaintext document
  kind = {}
end

function request()
  i = i + 1
  local k = i % 10
  if k < 4 then
    return wrk.format("POST", "/orders/v0/orders/902-3159896-1390916/buyerInfo",
      {["Content-Type"] = "application/json"}, body)
  elseif k < 7 then
    return wrk.format("GET", "/orders/v0/orders/902-3159896-1390916/buyerInfo")
  else
    return wrk.format("GET", "/public/status")
  end
end

function delay()
  return delay_ms
end

function response(status, headers, resp)
  -- Protected answers carry the buyer's e-mail in plaintext (decrypted by
  -- A) and no envelope; the unprotected one is the service's own JSON.
  if status == 200 and resp ~= nil and resp:find("BuyerEmail", 1, true) then
    if resp:find("dpg1.", 1, true) or not resp:find(email, 1, true) then
      bad = bad + 1
    end
  end
end

function done(summary, latency, requests)
  local wrong = 0
  for _, t in ipairs(threads) do
    wrong = wrong + t:get("bad")
  end
  local e = summary.errors
  io.write(string.format(
    'SOAK_RESULT {"requests":%d,"duration_us":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,"wrong_bodies":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout, wrong,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
