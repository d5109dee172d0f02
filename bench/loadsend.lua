-- wrk script for bench/loadsend.sh: POST /subscribe (a form post, as a news
-- site's embedded form sends it) with a unique address per request, and an
-- account of every answer so that the script can compare it with the rows
-- the database gained.
--
--   wrk -dSECONDS ... -s bench/loadsend.lua URL -- TAG DEADLINE PACE_MS
--
-- Addresses are TAG-THREAD-N@bench.example: TAG names the phase (the
-- script counts the rows LIKE 'TAG-%'), THREAD is the wrk thread, N counts
-- that thread's requests. An answer is accepted when its status is 200 (the
-- "check your inbox" page); anything else is counted as other, and its
-- statuses are listed. wrk's socket errors (connect, read, write, timeout)
-- are printed too.
--
-- DEADLINE (Unix seconds) ends the signups before wrk's own -d does: from
-- then on delay() holds every connection back, so the requests still in
-- flight get their answers and nothing new is sent. wrk's -d must leave
-- them a few seconds (the script gives 10): then no signup is left
-- unanswered when wrk stops, and the rows must equal the accepted answers
-- exactly. (wrk stops with requests in flight and never counts their
-- answers; bench/signup.sh sees that as rows = answers + up to -c.) wrk
-- starts a request's clock after its delay, so the held requests, never
-- sent, do not touch the latencies. sent= counts the calls of request(),
-- one per thread more than wrk sends: it makes one request per thread
-- before it connects and throws it away (the rows show that it never
-- reaches Herald), and the script allows for that. PACE_MS > 0 makes each connection wait
-- that long before each request (a paced load); 0 sends flat out.
local threads = {}
local next_id = 1

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  tag = args[1] or "ls"
  deadline = tonumber(args[2] or "0")
  pace = tonumber(args[3] or "0")
  sent = 0
  n = 0
  accepted = 0
  other = 0
  statuses = ""
end

function delay()
  if deadline > 0 and os.time() >= deadline then return 3600000 end
  return pace
end

function request()
  n = n + 1
  sent = n
  local body = "email=" .. tag .. "-" .. tid .. "-" .. n .. "%40bench.example&name=Bench+Reader&newsletters=daily"
  return wrk.format("POST", "/subscribe", {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end

function response(status, headers, body)
  if status == 200 then
    accepted = accepted + 1
  else
    other = other + 1
    -- the first few odd statuses, for the report
    if other <= 5 then statuses = statuses .. status .. "," end
  end
end

function done(summary, latency, requests)
  local acc, oth, snt, st = 0, 0, 0, ""
  for _, t in ipairs(threads) do
    local a, o, n, s = t:get("accepted"), t:get("other"), t:get("sent"), t:get("statuses")
    acc = acc + a
    oth = oth + o
    snt = snt + n
    st = st .. s
    io.write(string.format("THREAD %d sent=%d accepted=%d other=%d statuses=%s\n", t:get("tid"), n, a, o, s))
  end
  if st == "" then st = "-" end
  local e = summary.errors
  io.write(string.format("RESULT requests=%d sent=%d duration_us=%d rps=%.1f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f accepted=%d other=%d statuses=%s connect=%d read=%d write=%d timeout=%d non2xx=%d\n",
    summary.requests, snt, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, acc, oth, st, e.connect, e.read, e.write, e.timeout, e.status))
end
