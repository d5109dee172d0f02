#!/usr/bin/env bash
# Load under send: signups with wrk while digests to 100,000 readers are
# being sent, on one `herald serve` process, on SQLite or PostgreSQL.
#
#   bench/loadsend.sh [sqlite|postgres]     (default sqlite; run from the repository root)
#
# Environment (defaults in brackets):
#   DURATION=300     seconds of the main window: wrk and the send run together
#   SOLO=60          seconds of the signup ceiling (wrk with no send running)
#   SEND_SOLO=60     seconds of the send ceiling (the send loop, no signups)
#   N=100000         active readers of the newsletter "daily"
#   LOW=20000        the next issue is started once the last one has fewer
#                    messages than this pending (see the send loop below)
#   THREADS=2 CONNS_HTTP=50   wrk -t and -c (as bench/signup.sh)
#   RATE=            pace the signups: about RATE a second in all (each
#                    connection waits CONNS_HTTP/RATE s before each request);
#                    unset: flat out, as bench/signup.sh
#   CONNS=16 WORKERS=64 BATCH=500   smtp.connections, delivery.workers,
#                    delivery.batch_size (as bench/delivery.sh)
#   MAXCONNS=        database.max_conns (postgres; default: Herald's)
#   PGURL=postgres://postgres@127.0.0.1:5432   a role that may CREATE DATABASE
#   PGDB=herald_loadsend   the database created for the run and dropped after
#   PORT=2825 HTTP_PORT=8825   the sink's and Herald's loopback ports
#   KEEP=            keep the work directory (logs, SQLite file) and database
#
# What it does:
#   1. a fresh database: N active readers of "daily" imported from a
#      generated CSV with `herald subscribers import --status active`, five
#      Markdown articles with `herald articles import`; Postfix's smtp-sink
#      on loopback counts every message; one `herald serve` (mail.transport
#      smtp into the sink, delivery workers on, signup rate limits off,
#      altcha off so that attack mode never turns on, MX check off,
#      digest.check_interval 1h so the scheduler stays out of the way, and
#      http.write_timeout 10m, kept from when POST
#      /api/v1/newsletters/{id}/issues queued all N messages before it
#      answered (over 30 s on PostgreSQL under this load); it now answers
#      with the issue building and queues them in the background);
#   2. signup ceiling: wrk -t THREADS -c CONNS_HTTP --latency posting the
#      signup form (bench/loadsend.lua) with unique addresses for SOLO s
#      (then 10 s more for the answers in flight), nothing else running but
#      the delivery of their confirmation mails;
#   3. send ceiling: the send loop (below) for SEND_SOLO s with no signups;
#      the rate is herald_messages_total{kind="digest",outcome="sent"}
#      grown over the window divided by its length; the loop's last issue
#      is then let finish;
#   4. the main window: the send loop starts, and once the first digest
#      messages reach the sink wrk runs for DURATION s as in 2; the send
#      rate is taken over wrk's run exactly as in 3; then the loop stops
#      starting issues and the last ones finish;
#   5. accounting, each a failure when it does not hold: every wrk answer
#      was 200 and no socket error occurred; the rows the database gained
#      in each wrk phase equal the accepted answers; every issue has
#      sent = total and nothing failed, bounced or cancelled; every signup
#      got its confirmation; the sink received exactly as many messages as
#      Herald counted sent; Herald's log holds no error.
#
# The send loop: one newsletter cannot be sent twice with nothing new (the
# API answers 409), and 100,000 readers drain in well under the window, so
# the loop adds a new article (POST /api/v1/articles) and then builds an
# issue of "daily" for every reader (POST /api/v1/newsletters/daily/issues,
# which queues N messages before it answers), and starts the next one as
# soon as the last has fewer than LOW messages pending: the outbox never
# runs dry, and every issue goes to all N readers. Issue building (N outbox
# rows written) is part of the load, as it is in a real send.
#
# Needs: wrk, Postfix's smtp-sink (apt-get install wrk postfix; postfix
# itself need not run), curl, jq, sqlite3 or psql.
set -euo pipefail
engine=${1:-sqlite}
DURATION=${DURATION:-300}
SOLO=${SOLO:-60}
SEND_SOLO=${SEND_SOLO:-60}
N=${N:-100000}
LOW=${LOW:-20000}
THREADS=${THREADS:-2}
CONNS_HTTP=${CONNS_HTTP:-50}
CONNS=${CONNS:-16}
WORKERS=${WORKERS:-64}
BATCH=${BATCH:-500}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
PGDB=${PGDB:-herald_loadsend}
PORT=${PORT:-2825}
RATE=${RATE:-}
HTTP_PORT=${HTTP_PORT:-8825}
cd "$(dirname "$0")/.."
. bench/lib.sh
case $engine in sqlite | postgres) ;; *) echo "usage: bench/loadsend.sh [sqlite|postgres]" >&2; exit 2 ;; esac
for t in wrk curl jq /usr/sbin/smtp-sink; do
  command -v "$t" >/dev/null || { echo "$t is missing (apt-get install wrk postfix curl jq)" >&2; exit 1; }
done
if [ "$engine" = postgres ]; then
  command -v psql >/dev/null || { echo "psql is missing (apt-get install postgresql-client)" >&2; exit 1; }
  psql "$PGURL/postgres" -qAtc 'SELECT 1' >/dev/null
else
  command -v sqlite3 >/dev/null || { echo "sqlite3 is missing (apt-get install sqlite3)" >&2; exit 1; }
fi

work=$(mktemp -d)
sinkpid= servepid= looppid= wrkpid=
cleanup() {
  for p in $wrkpid $looppid $servepid $sinkpid; do kill "$p" 2>/dev/null || true; done
  [ -n "$servepid" ] && wait "$servepid" 2>/dev/null || true
  if [ -n "${KEEP:-}" ] || [ -e "$work/keep" ]; then
    echo "work directory kept: $work${PGDB:+ (database $PGDB when postgres)}" >&2
  else
    rm -rf "$work"
    [ "$engine" = postgres ] && psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $PGDB WITH (FORCE)" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
go build -o "$work/herald" ./cmd/herald

# RATE: each wrk connection waits CONNS_HTTP/RATE s before each request.
pace=0
[ -n "$RATE" ] && pace=$(awk -v c="$CONNS_HTTP" -v r="$RATE" 'BEGIN {printf "%d", c * 1000 / r}')
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
api="http://127.0.0.1:$HTTP_PORT"
failures=()
fail() { echo "FAIL: $*" >&2; failures+=("$*"); }
now() { date +%s.%N; }
# loadavg: the machine's load, printed at each phase (other work shares it).
loadavg() { echo "  (load average $(cut -d' ' -f1-3 /proc/loadavg))"; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", b - a}'; }
# sent prints herald_messages_total{outcome="sent"} of digests, of every
# kind, and of confirmations, and the time, from one scrape of /metrics.
sent() {
  local m t
  t=$(now)
  m=$(curl -fsS --max-time 60 -H "Authorization: Bearer $token" "$api/metrics") || { echo "0 0 0 $t"; return; }
  awk -v t="$t" '/^herald_messages_total/ && /outcome="sent"/ {a += $NF; if (/kind="digest"/) d += $NF; if (/kind="confirmation"/) c += $NF}
    END {printf "%d %d %d %s\n", d, a, c, t}' <<<"$m"
}
digests() { sent | cut -d' ' -f1; }
# rate FROM TO: messages a second between two samples of sent (column 1:
# digests, 2: every kind).
rate() { awk -v a="$1" -v b="$2" -v c="$3" 'BEGIN {split(a, x, " "); split(b, y, " "); printf "%.0f", (y[c] - x[c]) / (y[4] - x[4])}'; }
# rows TAG prints how many subscribers the wrk phase TAG made.
rows() {
  if [ "$engine" = postgres ]; then
    psql "$PGURL/$PGDB" -qAtc "SELECT count(*) FROM subscribers WHERE email LIKE '$1-%'"
  else
    sqlite3 -cmd '.timeout 10000' "$work/herald.db" "SELECT count(*) FROM subscribers WHERE email LIKE '$1-%'"
  fi
}

# The configuration: as bench/delivery.sh, plus what a benchmark of signups
# needs (no per-IP or per-subnet limit, no proof of work, no attack mode).
if [ "$engine" = postgres ]; then
  psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $PGDB WITH (FORCE)" >/dev/null 2>&1
  psql "$PGURL/postgres" -qc "CREATE DATABASE $PGDB" >/dev/null
  dsn="$PGURL/$PGDB?sslmode=disable"
else
  dsn="$work/herald.db"
fi
cat >"$work/config.yaml" <<EOF
http:
  addr: 127.0.0.1:$HTTP_PORT
  base_url: https://news.example.org
  write_timeout: 10m
database:
  driver: $engine
  dsn: $dsn
${MAXCONNS:+  max_conns: $MAXCONNS}
mail:
  transport: smtp
  from: "The Ledger <news@ledger.example>"
  reply_to: "The Ledger Newsroom <desk@ledger.example>"
  postal_address: "The Ledger, 1 Press Row, Springfield, IL 62701, USA"
smtp:
  host: 127.0.0.1
  port: $PORT
  tls: none
  connections: $CONNS
delivery:
  workers: $WORKERS
  batch_size: $BATCH
digest:
  check_interval: 1h
limits:
  signup_per_ip: 0
  signup_per_subnet: 0
  altcha: "off"
  check_mx: false
site:
  name: The Ledger
  url: https://ledger.example
  privacy_url: https://ledger.example/privacy
log:
  level: warn
newsletters:
  - id: daily
    name: The Daily Ledger
    description: The day's reporting, every morning.
    schedule: "0 7 * * *"
    timezone: America/New_York
    max_articles: 10
    new_reader_articles: 5
    lookback: 720h
EOF
export HERALD_CONFIG="$work/config.yaml"

# The five articles of bench/delivery.sh.
bench_articles "$work/articles"
awk -v n="$N" 'BEGIN { print "email,name,newsletters"; for (i = 0; i < n; i++) printf "reader%d@example%d.org,Reader %d,daily\n", i, i % 997, i }' >"$work/readers.csv"
t0=$(now)
"$work/herald" subscribers import "$work/readers.csv" --status active >/dev/null
t1=$(now)
"$work/herald" articles import "$work/articles" >/dev/null
echo "$engine: imported $N active readers in $(sub "$t0" "$t1") s"

require_free_port "$PORT"
smtp-sink -c -u root "127.0.0.1:$PORT" 1000 >"$work/sink.out" 2>&1 &
sinkpid=$!
sleep 0.5
HERALD_ADMIN_TOKEN=$token "$work/herald" serve >"$work/serve.out" 2>"$work/serve.err" &
servepid=$!
for _ in $(seq 200); do curl -fs "$api/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "$api/readyz" >/dev/null || { echo "herald serve did not start:" >&2; tail -5 "$work/serve.err" >&2; exit 1; }
sink0=$(sink_count)

# api_post PATH JSON: POSTs to the admin API, prints the body; a status
# other than 2xx is a failure (the body is shown).
api_post() {
  local code rc=0
  code=$(curl -sS --max-time 300 -o "$work/api.body" -w '%{http_code}' -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' -d "$2" "$api$1") || rc=$?
  case $rc in
  0) ;;
  28) fail "POST $1: no answer in 300 s"; hung; return 1 ;;
  *) fail "POST $1: curl failed ($rc)"; return 1 ;;
  esac
  case $code in 2??) cat "$work/api.body" ;; *) fail "POST $1 answered $code: $(head -c 300 "$work/api.body")"; return 1 ;; esac
}
# hung: Herald stopped answering. Its goroutines go to serve.err (SIGQUIT
# ends it) and the work directory is kept for a look.
hung() {
  echo "herald serve does not answer: goroutine dump in $work/serve.err" >&2
  kill -QUIT "$servepid" 2>/dev/null || true
  touch "$work/keep"
}
issue_field() { curl -fsS -H "Authorization: Bearer $token" "$api/api/v1/issues/$1" | jq -r ".$2"; }

# sendloop LABEL: until $work/stop exists, a new article and an issue of it
# to every reader, the next one once the last has fewer than LOW pending.
# Each issue's id, start (before the article is posted) and the time its
# POST answered go to $work/issues-LABEL.
sendloop() {
  local label=$1 k=0 id s b p
  while [ ! -e "$work/stop" ]; do
    k=$((k + 1))
    s=$(now)
    api_post /api/v1/articles "$(jq -nc --arg u "https://ledger.example/live/$label-$k/" --arg t "Update $k: the Council's vote, as it happens ($label)" \
      --arg p "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
      '{url: $u, title: $t, summary: "The latest from the chamber, as delegates vote on the mission.", content_markdown: "Delegates are voting on the **final text**.", author: "Live Desk", published_at: $p}')" >/dev/null || return 1
    id=$(api_post /api/v1/newsletters/daily/issues '{}' | jq -r .id) || return 1
    b=$(now)
    echo "$id $s $b" >>"$work/issues-$label"
    # The POST answers while the issue is still being built (status
    # building: its messages are queued in the background), so its pending
    # count means something only once that is done.
    while [ ! -e "$work/stop" ]; do
      j=$(curl -fsS -H "Authorization: Bearer $token" "$api/api/v1/issues/$id") || { fail "GET issue $id failed"; return 1; }
      [ "$(jq -r .status <<<"$j")" != building ] && [ "$(jq -r .pending <<<"$j")" -lt "$LOW" ] && break
      sleep 0.5
    done
  done
}
# settle LABEL: waits until every issue of the loop has nothing pending,
# then checks each: sent = total = N, nothing failed, bounced or cancelled.
settle() {
  local label=$1 id s b j
  while read -r id s b; do
    for _ in $(seq 1200); do
      kill -0 "$servepid" 2>/dev/null || { fail "herald serve is gone"; return 1; }
      [ "$(issue_field "$id" status)" != building ] && [ "$(issue_field "$id" pending)" = 0 ] && break
      sleep 0.5
    done
    j=$(curl -fsS -H "Authorization: Bearer $token" "$api/api/v1/issues/$id")
    echo "  issue $id: POST answered in $(sub "$s" "$b") s (article and issue); $(jq -c '{status, total, sent, failed, pending, bounced, cancelled}' <<<"$j")"
    [ "$(jq -r '[.total == .sent, .sent == '"$N"', .failed == 0, .pending == 0, .bounced == 0, .cancelled == 0] | all' <<<"$j")" = true ] ||
      fail "issue $id ($label) did not reach all $N readers exactly once: $(jq -c . <<<"$j")"
  done <"$work/issues-$label"
}
# runwrk TAG SECONDS: wrk against the signup form for SECONDS of signups
# (bench/loadsend.lua stops sending at a deadline and wrk runs 10 s more,
# so every request sent is answered before wrk stops); sets result (with
# the signup rate, rate=, over the SECONDS) and checks the answers and the
# rows.
runwrk() {
  local tag=$1 secs=$2 acc other errs n snt start deadline unans
  w_s0=$(sent)
  start=$(now)
  deadline=$(awk -v s="$start" -v d="$secs" 'BEGIN {printf "%d", s + d + 0.999}')
  wrk -t"$THREADS" -c"$CONNS_HTTP" -d"$((secs + 11))s" --timeout 30s --latency -s bench/loadsend.lua "$api" -- "$tag" "$deadline" "$pace" >"$work/wrk-$tag.out" 2>&1 &
  wrkpid=$!
  # the outbox's counters as the signups stop (w_s0, w_s1: the window)
  sleep "$(awk -v d="$deadline" -v n="$(now)" 'BEGIN {s = d - n; printf "%.2f", (s > 0) ? s : 0}')"
  w_s1=$(sent)
  wait "$wrkpid" || fail "wrk ($tag) exited with an error: $(tail -3 "$work/wrk-$tag.out")"
  wrkpid=
  result=$(grep '^RESULT' "$work/wrk-$tag.out") || { fail "wrk ($tag) printed no result"; cat "$work/wrk-$tag.out" >&2; return 1; }
  grep '^THREAD' "$work/wrk-$tag.out" | sed 's/^/  /'
  acc=$(sed -n 's/.* accepted=\([0-9]*\).*/\1/p' <<<"$result")
  other=$(sed -n 's/.* other=\([0-9]*\).*/\1/p' <<<"$result")
  snt=$(sed -n 's/.* sent=\([0-9]*\).*/\1/p' <<<"$result")
  errs=$(awk '{for (i = 1; i <= NF; i++) if ($i ~ /^(connect|read|write|timeout)=/) {split($i, a, "="); s += a[2]}} END {print s + 0}' <<<"$result")
  result="$result rate=$(awk -v a="$acc" -v s="$start" -v d="$deadline" 'BEGIN {printf "%.1f", a / (d - s)}') window_s=$(sub "$start" "$deadline")"
  n=$(rows "$tag")
  echo "  request() calls: $snt; answered 200: $acc; other answers: $other; socket errors: $errs; rows made by $tag: $n"
  [ "$other" = 0 ] || fail "$tag: $other answers were not 200 ($(sed -n 's/.* statuses=\([^ ]*\).*/\1/p' <<<"$result"))"
  [ "$errs" = 0 ] || fail "$tag: $errs socket errors in wrk"
  # wrk may call request() and throw the request away, at most once a
  # thread (seen: sent = answered + 1 in some threads; the rows show that
  # request never reaches Herald). More unanswered than that is a failure.
  unans=$((snt - acc - other))
  [ "$unans" -ge 0 ] && [ "$unans" -le "$THREADS" ] || fail "$tag: $snt requests made but $((acc + other)) answered before wrk stopped"
  [ "$n" = "$acc" ] || fail "$tag: $acc signups accepted but $n rows stored"
  signups=$((signups + n))
}
signups=0

# 2. The signup ceiling.
echo "signups alone, $SOLO s:"
loadavg
runwrk "ls$$a" "$SOLO"
solo_result=$result
echo "  $solo_result"

# 3. The send ceiling.
echo "send alone, $SEND_SOLO s:"
loadavg
rm -f "$work/stop"
sendloop solo &
looppid=$!
for _ in $(seq 600); do [ "$(digests)" -gt 0 ] && break; sleep 0.2; done
s0=$(sent)
sleep "$SEND_SOLO"
s1=$(sent)
touch "$work/stop"
wait "$looppid" || fail "the send loop (solo) failed"
looppid=
solo_rate=$(rate "$s0" "$s1" 1)
solo_all=$(rate "$s0" "$s1" 2)
echo "  $(rate "$s0" "$s1" 1) digest msg/s, $(rate "$s0" "$s1" 2) msg/s of every kind, over $SEND_SOLO s"
settle solo

# 4. The main window.
echo "signups during the send, $DURATION s:"
loadavg
rm -f "$work/stop"
before=$(digests)
sendloop main &
looppid=$!
for _ in $(seq 600); do [ "$(digests)" -gt "$before" ] && break; sleep 0.2; done
runwrk "ls$$b" "$DURATION"
main_result=$result
touch "$work/stop"
wait "$looppid" || fail "the send loop (main) failed"
looppid=
main_rate=$(rate "$w_s0" "$w_s1" 1)
main_all=$(rate "$w_s0" "$w_s1" 2)
echo "  $main_result"
echo "  over the signups' $DURATION s: $main_rate digest msg/s, $main_all msg/s of every kind (confirmations included); issues started: $(wc -l <"$work/issues-main")"
settle main

# 5. Every signup's confirmation, and the sink against Herald's count.
for _ in $(seq 600); do [ "$(sent | cut -d' ' -f3)" -ge "$signups" ] && break; sleep 0.5; done
conf=$(sent | cut -d' ' -f3)
[ "$conf" = "$signups" ] || fail "$signups signups but $conf confirmations sent"
last=-1
for _ in $(seq 50); do cur=$(sink_count); [ "$cur" = "$last" ] && break; last=$cur; sleep 0.2; done
got=$(( $(sink_count) - sink0 )); all=$(sent | cut -d' ' -f2)
echo "sink received $got messages; Herald counted $all sent ($conf confirmations)"
[ "$got" = "$all" ] || fail "the sink received $got messages, Herald counted $all sent"
errlines=$(grep -c -E 'level=ERROR|SQLITE_BUSY|database is locked|status=5[0-9][0-9]' "$work/serve.err" || true)
[ "$errlines" = 0 ] || { fail "herald serve logged $errlines error lines"; grep -E 'level=ERROR|SQLITE_BUSY|database is locked|status=5[0-9][0-9]' "$work/serve.err" | head -5 >&2; }

loadavg
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$2"; }
s_rps=$(field rate "$solo_result"); m_rps=$(field rate "$main_result")
echo "SUMMARY engine=$engine readers=$N duration=$DURATION"
echo "  signups alone:      $s_rps/s p50 $(field p50_ms "$solo_result") ms p99 $(field p99_ms "$solo_result") ms ($(field accepted "$solo_result") accepted)"
echo "  signups under send: $m_rps/s p50 $(field p50_ms "$main_result") ms p99 $(field p99_ms "$main_result") ms ($(field accepted "$main_result") accepted)"
echo "  send alone:         $solo_rate msg/s of digests, $solo_all msg/s of every kind"
echo "  send under signups: $main_rate msg/s of digests, $main_all msg/s of every kind"
awk -v a="$m_rps" -v b="$s_rps" -v c="$main_rate" -v d="$solo_rate" \
  'BEGIN {printf "RATIO signups under send/alone = %.2f; send under signups/alone = %.2f\n", a / b, c / d}'
if [ ${#failures[@]} -gt 0 ]; then
  echo "FAILED (${#failures[@]}):" >&2
  printf '  %s\n' "${failures[@]}" >&2
  exit 1
fi
echo "OK: no errors, no lost signups, every issue reached every reader"
