#!/usr/bin/env bash
# Delivery benchmark on PostgreSQL: `herald digest send` of one issue to N
# active readers, delivered over SMTP into Postfix's smtp-sink on loopback,
# by one Herald process and then by two sharing the outbox, against the
# ceiling of Postfix's smtp-source pushing the same count and size into the
# same sink, in the same run. bench/delivery.sh is the same on SQLite.
#
#   bench/delivery-pg.sh [ROUNDS]       (default 3; run from the repository root)
#
# Environment (defaults in brackets):
#   N=100000       active readers of the newsletter "daily"
#   PGURL=postgres://postgres@127.0.0.1:5432   the server (a role that may CREATE DATABASE)
#   SEED=sql       how readers are seeded: sql (one INSERT ... SELECT generate_series
#                  after `herald migrate`) or csv (`herald subscribers import --status
#                  active` of a generated CSV, as delivery.sh does; slower on PostgreSQL)
#   TWO=1          run the two-instance phase (0: one instance and smtp-source only)
#   SIZE=          smtp-source's message size (default: Herald's digest size)
#   CONNS=16       smtp.connections (per Herald process)
#   WORKERS=64     delivery.workers (per Herald process)
#   BATCH=500      delivery.batch_size
#   MAXCONNS=      database.max_conns (default: Herald's, max(4, CPUs))
#   SESSIONS=20    smtp-source's parallel sessions (-s)
#   PORT=2725      the sink's loopback port (delivery.sh uses 2525)
#   HTTP_PORT=8725 the second instance's HTTP port
#   SINK_FLAGS=    extra smtp-sink flags
#   HERALD_BIN=    a herald binary to run (default: built from the working tree)
#   KEEP=          set to keep the work directory and the databases at the end
#
# Per round:
#   1. a fresh PostgreSQL database (herald_bench_<pid>_<round>_1), `herald
#      migrate`, N active readers of "daily" (SEED, timed), five Markdown
#      articles with front matter through `herald articles import` (the same
#      five as delivery.sh: each digest carries five stories);
#   2. one instance: `herald digest send daily` (mail.transport smtp,
#      smtp.tls none) under /usr/bin/time: from the command's start
#      (building the issue: N outbox rows) to its exit (no message pending).
#      Peak RSS is the command's;
#   3. smtp-source -d -s SESSIONS -l SIZE -m N into the same sink, timed:
#      the same-run ceiling;
#   4. two instances, on a second fresh database seeded the same way
#      (herald_bench_<pid>_<round>_2): `herald serve` (the same delivery
#      settings, HTTP on HTTP_PORT, digest.check_interval 1h so that its
#      scheduler stays out of the way) is started and ready, then `herald
#      digest send daily` is timed as in 2; both processes claim the issue's
#      messages from the outbox (FOR UPDATE SKIP LOCKED), and digest send
#      exits when no message of the issue is pending, whoever sent it. Peak
#      RSS of both is recorded, and serve's share (herald_messages_total
#      from its /metrics); serve is then stopped with SIGTERM;
#   5. in each Herald phase the sink's message counter must grow by exactly
#      N and Herald must report N sent (and smtp-source's phase N): every
#      reader got exactly one message.
# At the end: medians of the rounds, the ratios against smtp-source and 2 vs
# 1 instances. Needs: psql, Postfix's smtp-sink and smtp-source (apt-get
# install postfix postgresql-client; postfix itself need not run), GNU time,
# curl.
set -euo pipefail
rounds=${1:-3}
N=${N:-100000}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
SEED=${SEED:-sql}
TWO=${TWO:-1}
CONNS=${CONNS:-16}
WORKERS=${WORKERS:-64}
BATCH=${BATCH:-500}
SESSIONS=${SESSIONS:-20}
PORT=${PORT:-2725}
HTTP_PORT=${HTTP_PORT:-8725}
cd "$(dirname "$0")/.."
. bench/lib.sh
for t in /usr/sbin/smtp-sink /usr/sbin/smtp-source /usr/bin/time; do
  [ -x "$t" ] || { echo "$t is missing (apt-get install postfix time)" >&2; exit 1; }
done
command -v psql >/dev/null || { echo "psql is missing (apt-get install postgresql-client)" >&2; exit 1; }
psql "$PGURL/postgres" -qAtc 'SELECT 1' >/dev/null

work=$(mktemp -d)
sinkpid= servepid= timepid=
dbs=()
prefix=herald_bench_$$
cleanup() {
  [ -n "$servepid" ] && kill "$servepid" 2>/dev/null || true
  [ -n "$sinkpid" ] && kill "$sinkpid" 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then
    echo "work directory kept: $work; databases kept: ${dbs[*]}" >&2
  else
    rm -rf "$work"
    for d in "${dbs[@]}"; do psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null 2>&1 || true; done
  fi
}
trap cleanup EXIT
if [ -n "${HERALD_BIN:-}" ]; then cp "$HERALD_BIN" "$work/herald"; else go build -o "$work/herald" ./cmd/herald; fi

# CPU seconds (user+system) so far: cpu_sink of the sink; cpu_pg of every
# PostgreSQL process, the backends that have exited included (the
# postmaster's children's times). cpu_pg counts the server's other clients too.
ticks() { awk '{print $14 + $15 + ($2 == "(postgres)" && $4 == 1 ? $16 + $17 : 0)}' "$@" 2>/dev/null | awk '{s += $1} END {print s + 0}'; }
cpu_sink() { ticks "/proc/$sinkpid/stat" | awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", $1 / hz}'; }
cpu_pg() { local f=(); for p in $(pgrep -x postgres); do f+=("/proc/$p/stat"); done; ticks "${f[@]}" | awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", $1 / hz}'; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", b-a}'; }

# newdb NAME: a fresh database, migrated, seeded with N active readers of
# "daily" and the five articles; HERALD_DATABASE_DSN points at it after.
newdb() {
  local db=$1 n=$2 t0 t1
  psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
  psql "$PGURL/postgres" -qc "CREATE DATABASE $db" >/dev/null
  dbs+=("$db")
  export HERALD_DATABASE_DSN="$PGURL/$db?sslmode=disable"
  t0=$(date +%s.%N)
  if [ "$SEED" = csv ]; then
    awk -v n="$n" 'BEGIN { print "email,name,newsletters"; for (i = 0; i < n; i++) printf "reader%d@example%d.org,Reader %d,daily\n", i, i % 997, i }' >"$work/readers.csv"
    "$work/herald" subscribers import "$work/readers.csv" --status active >/dev/null
  else
    "$work/herald" migrate >/dev/null 2>&1
    # What an import with --status active leaves behind for delivery: an
    # active, confirmed subscriber and its newsletter choice (the consent
    # record and activity log rows are not read by a send).
    psql "$PGURL/$db" -q -v ON_ERROR_STOP=1 <<EOF >/dev/null
INSERT INTO subscribers (id, email, name, status, created_at, updated_at, confirmed_at)
  SELECT i + 1, 'reader' || i || '@example' || (i % 997) || '.org', 'Reader ' || i, 'active', now(), now(), now()
  FROM generate_series(0, $n - 1) AS i;
SELECT setval(pg_get_serial_sequence('subscribers', 'id'), $n);
INSERT INTO subscriber_newsletters (subscriber_id, newsletter_id) SELECT id, 'daily' FROM subscribers;
ANALYZE;
EOF
  fi
  t1=$(date +%s.%N)
  "$work/herald" articles import "$work/articles" >/dev/null
  echo "  $db: $n readers seeded ($SEED) in $(elapsed "$t0" "$t1") s"
}

cat >"$work/config.yaml" <<EOF
http:
  addr: 127.0.0.1:$HTTP_PORT
  base_url: https://news.example.org
database:
  driver: postgres
  dsn: $PGURL/postgres?sslmode=disable
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
metrics:
  public: true
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

# The five articles of delivery.sh.
bench_articles "$work/articles"

# The size of one reader's message, sent through a sink that dumps it.
if [ -z "${SIZE:-}" ]; then
  mkdir -p "$work/probe"
  require_free_port "$PORT" "$((PORT + 1))"
  smtp-sink -u root -d "$work/probe/%M." "127.0.0.1:$((PORT + 1))" 10 >/dev/null 2>&1 &
  probepid=$!
  sleep 0.3
  newdb "${prefix}_probe" 1 >/dev/null
  HERALD_SMTP_PORT=$((PORT + 1)) "$work/herald" digest send daily >/dev/null 2>&1
  sleep 0.2
  kill "$probepid"
  SIZE=$(sed -n '/^From: /,$p' "$work"/probe/* | wc -c)
fi
echo "message size: $SIZE bytes"

: >"$work/one.txt"; : >"$work/two.txt"; : >"$work/source.txt"; : >"$work/rss1.txt"; : >"$work/rss2.txt"
smtp-sink -c ${SINK_FLAGS:-} -u root "127.0.0.1:$PORT" 1000 >"$work/sink.out" 2>&1 &
sinkpid=$!
sleep 0.5

# send LABEL: times `herald digest send daily`, checks the sink and the
# report, prints the rate; sets rate and rss.
send() {
  local label=$1 before secs got sent user sys s0 s1 p0 p1
  before=$(wait_count)
  s0=$(cpu_sink); p0=$(cpu_pg)
  /usr/bin/time -f '%e %M %U %S' -o "$work/time.txt" "$work/herald" digest send daily >"$work/send.out" 2>"$work/send.err" ||
    { echo "herald digest send failed:" >&2; tail -5 "$work/send.err" >&2; exit 1; }
  read -r secs rss user sys <"$work/time.txt"
  got=$(( $(wait_count) - before ))
  s1=$(cpu_sink); p1=$(cpu_pg)
  sent=$(sed -n 's/.*sent \([0-9]*\),.*/\1/p' "$work/send.out")
  rate=$(awk -v n="$N" -v s="$secs" 'BEGIN {printf "%.0f", n/s}')
  echo "round $r $label: $N messages in $secs s = $rate msg/s, digest send peak RSS $((rss / 1024)) MiB; sink received $got, herald says sent $sent"
  echo "  CPU: herald digest send $(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.1f", u + s}') s, smtp-sink $(awk -v a="$s0" -v b="$s1" 'BEGIN {printf "%.1f", b - a}') s, PostgreSQL $(awk -v a="$p0" -v b="$p1" 'BEGIN {printf "%.1f", b - a}') s (all its clients)"
  [ "$got" = "$N" ] && [ "$sent" = "$N" ] || { echo "MISMATCH: every reader must get exactly one message" >&2; exit 1; }
}

for r in $(seq "$rounds"); do
  # 1 + 2: one instance
  newdb "${prefix}_${r}_1" "$N"
  send "1 instance "
  echo "$rate" >>"$work/one.txt"; echo "$rss" >>"$work/rss1.txt"
  [ -n "${KEEP:-}" ] || { psql "$PGURL/postgres" -qc "DROP DATABASE ${prefix}_${r}_1 WITH (FORCE)" >/dev/null; }

  # 3: the ceiling
  before=$(wait_count)
  t0=$(date +%s.%N)
  smtp-source -d -s "$SESSIONS" -l "$SIZE" -m "$N" "127.0.0.1:$PORT"
  t1=$(date +%s.%N)
  got=$(( $(wait_count) - before ))
  srate=$(awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", n/(b-a)}')
  echo "round $r smtp-source: $N messages = $srate msg/s; sink received $got"
  [ "$got" = "$N" ] || { echo "MISMATCH: smtp-source delivered $got of $N" >&2; exit 1; }
  echo "$srate" >>"$work/source.txt"

  # 4: two instances
  [ "$TWO" = 1 ] || continue
  newdb "${prefix}_${r}_2" "$N"
  /usr/bin/time -f '%e %M %U %S' -o "$work/serve-time.txt" "$work/herald" serve >"$work/serve.out" 2>"$work/serve.err" &
  timepid=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fs "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null || { echo "herald serve did not start:" >&2; tail -5 "$work/serve.err" >&2; exit 1; }
  servepid=$(pgrep -P "$timepid" -x herald)
  send "2 instances"
  share=$(curl -fs "http://127.0.0.1:$HTTP_PORT/metrics" | awk '/^herald_messages_total/ && /sent/ {s += $NF} END {printf "%d", s}')
  echo "  of which herald serve sent $share, herald digest send $((N - share))"
  kill -TERM "$servepid"; wait "$timepid" || true; servepid=
  read -r _ srss suser ssys <"$work/serve-time.txt"
  echo "  herald serve (second instance) peak RSS $((srss / 1024)) MiB, CPU $(awk -v u="$suser" -v s="$ssys" 'BEGIN {printf "%.1f", u + s}') s over its life"
  echo "$rate" >>"$work/two.txt"; echo "$rss $srss" | awk '{print ($1 > $2) ? $1 : $2}' >>"$work/rss2.txt"
  [ -n "${KEEP:-}" ] || { psql "$PGURL/postgres" -qc "DROP DATABASE ${prefix}_${r}_2 WITH (FORCE)" >/dev/null; }
done

o=$(median <"$work/one.txt"); s=$(median <"$work/source.txt"); m1=$(median <"$work/rss1.txt")
echo "MEDIAN 1 instance=$o msg/s smtp-source=$s msg/s peak_rss=$((m1 / 1024)) MiB (N=$N rounds=$rounds seed=$SEED conns=$CONNS workers=$WORKERS batch=$BATCH)"
awk -v h="$o" -v s="$s" 'BEGIN {printf "RATIO 1 instance/smtp-source = %.2f\n", h/s}'
if [ "$TWO" = 1 ]; then
  t=$(median <"$work/two.txt"); m2=$(median <"$work/rss2.txt")
  echo "MEDIAN 2 instances=$t msg/s peak_rss_per_process=$((m2 / 1024)) MiB"
  awk -v h="$t" -v s="$s" -v o="$o" 'BEGIN {printf "RATIO 2 instances/smtp-source = %.2f; 2/1 instances = %.2f\n", h/s, h/o}'
fi
