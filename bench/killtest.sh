#!/usr/bin/env bash
# Kill test, full size (issue 4, "Chaos and fault tests"): `herald serve`
# delivers one digest issue to READERS readers through an in-process SMTP
# relay that records every message it accepts; it is stopped once with
# SIGTERM, then killed with SIGKILL KILLS times at random moments and
# restarted each time, and finally left to finish. Then:
#   - the SIGTERM drained cleanly: no row left sending, the relay had
#     received exactly the rows marked sent;
#   - every reader received the issue; repeats only with the same
#     Message-ID, and at most KILLS x CONNECTIONS of them;
#   - the database agrees with the relay: rows sent = distinct recipients
#     received; nothing queued, sending or failed.
#
#   bench/killtest.sh [RUNS]        (default 1; from anywhere in the repository)
#
# It is the Go test chaos.TestKillAndRestart (which CI runs at 2,000 readers
# and 5 kills) with its knobs turned up. Environment (defaults in brackets):
#   READERS=20000     readers of the issue
#   KILLS=20          SIGKILLs during the send
#   CONNECTIONS=4     smtp.connections = delivery.workers
#   DATA_DELAY=       the relay's time per message, so the send outlasts the
#                     kills: 2 ms per connection (8ms at 4; at 16 connections
#                     the 8 ms that once was the default let the send finish
#                     after 18 of its 20 kills)
#   MAX_UPTIME=1.5s   each child is killed at a random moment below this
#   SEED=             replay a run (each run prints its seed)
# Logs go to bench/out/killtest-*.log; a summary line per run and a total
# are printed at the end. Exit status 1 if any run failed.
set -euo pipefail
runs=${1:-1}
cd "$(dirname "$0")/.."
mkdir -p bench/out

READERS=${READERS:-20000}
KILLS=${KILLS:-20}
CONNECTIONS=${CONNECTIONS:-4}
DATA_DELAY=${DATA_DELAY:-$((2 * CONNECTIONS))ms}
MAX_UPTIME=${MAX_UPTIME:-1.5s}

summary=()
failed=0
for r in $(seq "$runs"); do
  log="bench/out/killtest-$(date -u +%Y%m%dT%H%M%SZ)-$r.log"
  echo "run $r of $runs: $READERS readers, $KILLS kills, $CONNECTIONS connections (log: $log)"
  start=$(date +%s)
  set +e
  HERALD_KILLTEST_READERS=$READERS HERALD_KILLTEST_KILLS=$KILLS \
    HERALD_KILLTEST_CONNECTIONS=$CONNECTIONS HERALD_KILLTEST_DATA_DELAY=$DATA_DELAY \
    HERALD_KILLTEST_MAX_UPTIME=$MAX_UPTIME HERALD_KILLTEST_SEED=${SEED:-} \
    go test -count=1 -run '^TestKillAndRestart$' -v -timeout 60m ./chaos/ >"$log" 2>&1
  status=$?
  set -e
  line=$(grep -o 'KILLTEST .*' "$log" | tail -1 || true)
  grep -E 'kill_test.go:[0-9]+: (kill [0-9]+|SIGTERM|the issue)' "$log" | sed 's/^ *kill_test.go:[0-9]*: /  /' || true
  if [ "$status" != 0 ] || [ -z "$line" ] || ! grep -q 'result=PASS' <<<"$line"; then
    failed=1
    echo "run $r FAILED (exit $status):"
    grep -E '^\s+\S+_test.go:[0-9]+:' "$log" | grep -v -E 'KILLTEST|kill [0-9]+:' | tail -20 || true
    [ -n "$line" ] || line="KILLTEST result=FAIL (no summary line; see $log)"
  fi
  summary+=("run $r ($(( $(date +%s) - start )) s wall): $line")
done

echo
echo "== summary"
printf '%s\n' "${summary[@]}"
if [ "$failed" = 0 ]; then echo "RESULT PASS"; else echo "RESULT FAIL"; fi
exit "$failed"
