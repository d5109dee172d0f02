#!/usr/bin/env bash
# Signup benchmark: Herald's full POST /subscribe against the ceiling of a bare
# echo + SQLite single-insert handler, in the same run, under wrk.
#
#   bench/signup.sh [ROUNDS] [SECONDS]     (defaults: 3 rounds of 15 s)
#
# Each round starts both servers on fresh SQLite files and runs
# wrk -t2 -c50 against each in turn; the medians of the rounds are printed,
# with each round's own ratio and both servers' CPU time per request.
# Needs: wrk (apt-get install wrk). Run from the repository root.
set -euo pipefail
rounds=${1:-3}
secs=${2:-15}
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install wrk" >&2; exit 1; }

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/herald" ./cmd/herald
go build -o "$work/ceiling" ./bench/ceiling

wait_up() { for _ in $(seq 100); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done; echo "server at $1 did not start" >&2; return 1; }
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# cpu_us PID: the CPU time (user + system) the process has used, in µs.
tck=$(getconf CLK_TCK)
cpu_us() { awk -v t="$tck" '{print ($14 + $15) * 1e6 / t}' "/proc/$1/stat"; }
# per_req START_US PID RESULT: the process's CPU µs per request since START_US.
per_req() { awk -v a="$1" -v b="$(cpu_us "$2")" -v n="$(field requests "$3")" 'BEGIN {printf "%.0f", (b - a) / n}'; }

: >"$work/herald.txt"; : >"$work/ceiling.txt"
for r in $(seq "$rounds"); do
  rm -rf "$work/data"; mkdir -p "$work/data"
  "$work/ceiling" -addr 127.0.0.1:8099 -db "$work/data/ceiling.db" &
  cpid=$!
  wait_up http://127.0.0.1:8099/nothing-here 2>/dev/null || true
  sleep 0.5
  c0=$(cpu_us "$cpid")
  out=$(wrk -t2 -c50 -d"${secs}s" --latency -s bench/signup.lua http://127.0.0.1:8099 | grep RESULT)
  out="$out cpu_us_per_req=$(per_req "$c0" "$cpid" "$out")"
  echo "round $r ceiling: $out"; echo "$out" >>"$work/ceiling.txt"
  kill "$cpid"; wait "$cpid" 2>/dev/null || true

  HERALD_HTTP_ADDR=127.0.0.1:8098 HERALD_HTTP_BASE_URL=http://127.0.0.1:8098 \
  HERALD_DATABASE_DSN="$work/data/herald.db" HERALD_MAIL_OUTBOX_DIR="$work/data/outbox" \
  HERALD_LIMITS_SIGNUP_PER_IP=0 HERALD_LIMITS_SIGNUP_PER_SUBNET=0 HERALD_LIMITS_ALTCHA=off \
  HERALD_LOG_LEVEL=warn HERALD_DELIVERY_WORKERS=0 \
    "$work/herald" serve --config config.yaml &
  hpid=$!
  wait_up http://127.0.0.1:8098/healthz
  h0=$(cpu_us "$hpid")
  out=$(wrk -t2 -c50 -d"${secs}s" --latency -s bench/signup.lua http://127.0.0.1:8098 | grep RESULT)
  out="$out cpu_us_per_req=$(per_req "$h0" "$hpid" "$out")"
  echo "round $r herald:  $out"; echo "$out" >>"$work/herald.txt"
  kill "$hpid"; wait "$hpid" 2>/dev/null || true
  rows=$(sqlite3 "$work/data/herald.db" "select count(*) from subscribers" 2>/dev/null || echo "?")
  echo "round $r herald subscribers stored: $rows"
done

for who in ceiling herald; do
  rps=$(while read -r l; do field rps "$l"; done <"$work/$who.txt" | median)
  p99=$(while read -r l; do field p99_ms "$l"; done <"$work/$who.txt" | median)
  err=$(while read -r l; do field non2xx "$l"; done <"$work/$who.txt" | median)
  cpu=$(while read -r l; do field cpu_us_per_req "$l"; done <"$work/$who.txt" | median)
  echo "MEDIAN $who rps=$rps p99_ms=$p99 non2xx=$err cpu_us_per_req=$cpu"
  eval "${who}_rps=$rps ${who}_cpu=$cpu"
done
awk -v h="$herald_rps" -v c="$ceiling_rps" 'BEGIN {printf "RATIO herald/ceiling = %.2f\n", h/c}'
# On a shared machine the load can change between one round's two runs; the
# ratio of each round (Herald against the ceiling measured just before it)
# and their median show how much. CPU time per request depends much less on
# what else the machine is doing than requests per second do.
per=$(paste "$work/herald.txt" "$work/ceiling.txt" | awk -F'\t' '{
  match($1, /rps=[0-9.]+/); h = substr($1, RSTART + 4, RLENGTH - 4)
  match($2, /rps=[0-9.]+/); c = substr($2, RSTART + 4, RLENGTH - 4)
  printf "%.2f\n", h / c }')
echo "ROUND RATIOS $(tr '\n' ' ' <<<"$per")"
echo "MEDIAN ROUND RATIO $(median <<<"$per")"
echo "CPU PER REQUEST herald/ceiling = $(awk -v h="$herald_cpu" -v c="$ceiling_cpu" 'BEGIN {printf "%.2f", h/c}')"
