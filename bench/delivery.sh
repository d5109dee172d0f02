#!/usr/bin/env bash
# Delivery benchmark: `herald digest send` of one issue to N active readers,
# delivered over SMTP into Postfix's smtp-sink on loopback, against the
# ceiling of Postfix's smtp-source pushing the same count and size into the
# same sink, in the same run.
#
#   bench/delivery.sh [ROUNDS]          (default 3; run from the repository root)
#
# Environment (defaults in brackets):
#   N=100000       active readers of the newsletter "daily"
#   SIZE=          smtp-source's message size (default: Herald's digest size)
#   CONNS=64       smtp.connections (Herald's relay connections)
#   WORKERS=64     delivery.workers (= CONNS: each worker chains its messages on a connection of its own)
#   BATCH=500      delivery.batch_size (messages per claim, results per settle)
#   SESSIONS=20    smtp-source's parallel sessions (-s)
#   PORT=2525      the sink's loopback port
#   SINK_FLAGS=    extra smtp-sink flags, e.g. -p (do not offer PIPELINING)
#   RELAY_DELAY=   e.g. 1ms: Herald and smtp-source reach the sink through
#                  bench/rttproxy, which delays every byte by this much each
#                  way (a relay a 2 ms round trip away); none by default
#   KEEP=          set to keep the work directory (databases, logs) at the end
#   HERALD_BIN=    a herald binary to measure instead of building this tree's
#                  (e.g. an older commit's, for a before/after on the same day)
#
# Per round:
#   1. a fresh SQLite database: N readers imported from a generated CSV with
#      `herald subscribers import --status active` (timed), and five Markdown
#      articles with front matter imported with `herald articles import`, so
#      each reader's digest carries five stories and their own links;
#   2. `herald digest send daily` with mail.transport smtp, smtp.tls none,
#      under /usr/bin/time: the wall time runs from the command's start
#      (building the issue: N outbox rows) to its exit, which comes when no
#      message is pending (the last settle). Peak RSS and CPU time (user+sys per message) are
#      the command's;
#   3. smtp-source -d (reused connections) -s SESSIONS -l SIZE -m N into the
#      same sink, timed, where SIZE is the size of one reader's digest
#      (measured before the rounds by sending it to one reader through a
#      sink that dumps it);
#   4. the sink's message counter must have grown by exactly N in each phase,
#      and Herald must report N sent: every reader got exactly one message.
# At the end the medians of the rounds and the ratio Herald/smtp-source are
# printed. Needs: Postfix's smtp-sink and smtp-source (apt-get install
# postfix; postfix itself need not run), sqlite3, GNU time.
set -euo pipefail
rounds=${1:-3}
N=${N:-100000}
CONNS=${CONNS:-64}
WORKERS=${WORKERS:-64}
BATCH=${BATCH:-500}
SESSIONS=${SESSIONS:-20}
PORT=${PORT:-2525}
# Where Herald and smtp-source connect: the sink, or the proxy before it.
SEND_PORT=$PORT
[ -n "${RELAY_DELAY:-}" ] && SEND_PORT=$((PORT + 2))
cd "$(dirname "$0")/.."
. bench/lib.sh
for t in /usr/sbin/smtp-sink /usr/sbin/smtp-source /usr/bin/time; do
  [ -x "$t" ] || { echo "$t is missing (apt-get install postfix time)" >&2; exit 1; }
done

work=$(mktemp -d)
sinkpid=
proxypid=
cleanup() {
  [ -n "$sinkpid" ] && kill "$sinkpid" 2>/dev/null || true
  [ -n "$proxypid" ] && kill "$proxypid" 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "work directory kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
if [ -n "${HERALD_BIN:-}" ]; then cp "$HERALD_BIN" "$work/herald"; else go build -o "$work/herald" ./cmd/herald; fi

# sink_cpu prints the sink's CPU time so far (user+sys), in seconds.
sink_cpu() { awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14+$15)/t}' "/proc/$sinkpid/stat"; }

# The configuration: the repository's defaults, one newsletter, every
# reader's first issue carries all five articles.
cat >"$work/config.yaml" <<EOF
http:
  base_url: https://news.example.org
database:
  driver: sqlite
  dsn: $work/herald.db
mail:
  transport: smtp
  from: "The Ledger <news@ledger.example>"
  reply_to: "The Ledger Newsroom <desk@ledger.example>"
  postal_address: "The Ledger, 1 Press Row, Springfield, IL 62701, USA"
smtp:
  host: 127.0.0.1
  port: $SEND_PORT
  tls: none
  connections: $CONNS
delivery:
  workers: $WORKERS
  batch_size: $BATCH
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

# Five articles as a news site publishes them: headline, byline, picture and
# a one-sentence summary, dated within the last day.
bench_articles "$work/articles"

# The size of one reader's message: one reader, sent into a sink that dumps
# it. smtp-source then sends messages of that size (SIZE overrides it).
if [ -z "${SIZE:-}" ]; then
  mkdir -p "$work/probe"
  require_free_port "$PORT" "$((PORT + 1))"
  smtp-sink -u root -d "$work/probe/%M." "127.0.0.1:$((PORT + 1))" 10 >/dev/null 2>&1 &
  probepid=$!
  sleep 0.3
  printf 'email,name,newsletters\nreader0@example0.org,Reader 0,daily\n' >"$work/probe.csv"
  export HERALD_CONFIG="$work/config.yaml"
  HERALD_DATABASE_DSN="$work/probe.db" "$work/herald" subscribers import "$work/probe.csv" --status active >/dev/null
  HERALD_DATABASE_DSN="$work/probe.db" "$work/herald" articles import "$work/articles" >/dev/null
  HERALD_DATABASE_DSN="$work/probe.db" HERALD_SMTP_PORT=$((PORT + 1)) "$work/herald" digest send daily >/dev/null 2>&1
  sleep 0.2
  kill "$probepid"
  # the sink adds its own trace headers before the message's From line
  SIZE=$(sed -n '/^From: /,$p' "$work"/probe/* | wc -c)
fi
echo "message size: $SIZE bytes"

awk -v n="$N" 'BEGIN { print "email,name,newsletters"; for (i = 0; i < n; i++) printf "reader%d@example%d.org,Reader %d,daily\n", i, i % 997, i }' >"$work/readers.csv"

: >"$work/herald.txt"; : >"$work/source.txt"; : >"$work/rss.txt"; : >"$work/cpu.txt"
smtp-sink -c ${SINK_FLAGS:-} -u root "127.0.0.1:$PORT" 1000 >"$work/sink.out" 2>&1 &
sinkpid=$!
if [ -n "${RELAY_DELAY:-}" ]; then
  require_free_port "$SEND_PORT"
  go build -o "$work/rttproxy" ./bench/rttproxy
  "$work/rttproxy" -listen "127.0.0.1:$SEND_PORT" -target "127.0.0.1:$PORT" -delay "$RELAY_DELAY" &
  proxypid=$!
  echo "relay delay: $RELAY_DELAY each way, through bench/rttproxy"
fi
sleep 0.5
export HERALD_CONFIG="$work/config.yaml"

for r in $(seq "$rounds"); do
  rm -f "$work"/herald.db*
  t0=$(date +%s.%N)
  "$work/herald" subscribers import "$work/readers.csv" --status active >/dev/null
  t1=$(date +%s.%N)
  "$work/herald" articles import "$work/articles" >/dev/null
  echo "round $r: imported $N readers in $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b-a}') s"

  before=$(wait_count); c0=$(sink_cpu)
  /usr/bin/time -f '%e %M %U %S' -o "$work/time.txt" "$work/herald" digest send daily >"$work/send.out" 2>"$work/send.err" ||
    { echo "herald digest send failed:" >&2; tail -5 "$work/send.err" >&2; exit 1; }
  read -r secs rss usr sys <"$work/time.txt"
  cpu=$(awk -v n="$N" -v u="$usr" -v s="$sys" 'BEGIN {printf "%.0f", (u+s)*1e6/n}')
  got=$(( $(wait_count) - before )); c1=$(sink_cpu)
  hsink=$(awk -v n="$N" -v a="$c0" -v b="$c1" 'BEGIN {printf "%.1f", (b-a)*1e6/n}')
  sent=$(sed -n 's/.*sent \([0-9]*\),.*/\1/p' "$work/send.out")
  rate=$(awk -v n="$N" -v s="$secs" 'BEGIN {printf "%.0f", n/s}')
  echo "round $r herald:  $N messages in $secs s = $rate msg/s, CPU $cpu us/msg (user $usr s, sys $sys s; the sink $hsink us/msg), peak RSS $((rss / 1024)) MiB; sink received $got, herald says sent $sent"
  [ "$got" = "$N" ] && [ "$sent" = "$N" ] || { echo "MISMATCH: every reader must get exactly one message" >&2; exit 1; }
  echo "$rate" >>"$work/herald.txt"; echo "$rss" >>"$work/rss.txt"; echo "$cpu" >>"$work/cpu.txt"

  before=$(wait_count); c0=$(sink_cpu)
  t0=$(date +%s.%N)
  /usr/bin/time -f '%U %S' -o "$work/stime.txt" smtp-source -d -s "$SESSIONS" -l "$SIZE" -m "$N" "127.0.0.1:$SEND_PORT"
  t1=$(date +%s.%N)
  read -r susr ssys <"$work/stime.txt"
  got=$(( $(wait_count) - before )); c1=$(sink_cpu)
  ssink=$(awk -v n="$N" -v a="$c0" -v b="$c1" 'BEGIN {printf "%.1f", (b-a)*1e6/n}')
  rate=$(awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", n/(b-a)}')
  scpu=$(awk -v n="$N" -v u="$susr" -v s="$ssys" 'BEGIN {printf "%.1f", (u+s)*1e6/n}')
  echo "round $r source:  $N messages = $rate msg/s, CPU $scpu us/msg (the sink $ssink us/msg); sink received $got"
  [ "$got" = "$N" ] || { echo "MISMATCH: smtp-source delivered $got of $N" >&2; exit 1; }
  echo "$rate" >>"$work/source.txt"
done

h=$(median <"$work/herald.txt"); s=$(median <"$work/source.txt"); m=$(median <"$work/rss.txt"); c=$(median <"$work/cpu.txt")
echo "MEDIAN herald=$h msg/s smtp-source=$s msg/s herald_cpu=$c us/msg peak_rss=$((m / 1024)) MiB (N=$N rounds=$rounds conns=$CONNS workers=$WORKERS batch=$BATCH${RELAY_DELAY:+ relay_delay=$RELAY_DELAY})"
awk -v h="$h" -v s="$s" 'BEGIN {printf "RATIO herald/smtp-source = %.2f\n", h/s}'
