#!/usr/bin/env bash
# DKIM benchmark: `herald digest send` of one issue to N active readers with
# in-app RSA-2048 DKIM signing, delivered over SMTP into Postfix's smtp-sink
# on loopback, against the machine's RSA signing ceiling measured in the
# same run: RSA-2048 PKCS #1 v1.5 SHA-256 signatures per second on all cores
# (Go's crypto/rsa, the code Herald signs with, in BenchmarkRSACeiling with
# -cpu = the number of cores). The ratio Herald/ceiling is messages
# delivered end to end per second against bare signatures per second.
#
#   bench/dkim.sh [ROUNDS]              (default 3; run from the repository root)
#
# Environment (defaults in brackets):
#   N=20000        active readers of the newsletter "daily"
#   CONNS=64       smtp.connections
#   WORKERS=64     delivery.workers (= CONNS: each worker chains its messages on a connection of its own)
#   BATCH=500      delivery.batch_size
#   PORT=2725      the sink's loopback port
#   CEILING_TIME=5s how long each ceiling measurement signs
#   KEEP=          set to keep the work directory (databases, logs) at the end
#
# Per round, in this order:
#   1. a fresh SQLite database with N readers and five articles (as in
#      bench/delivery.sh), then `herald digest send daily` WITHOUT DKIM under
#      /usr/bin/time: wall time, and the CPU time (user+sys) of Herald and of
#      the sink over the send, per message;
#   2. the same with DKIM on (dkim.selector, dkim.domain,
#      dkim.private_key_file: an RSA-2048 key made for the run);
#   3. the ceiling: BenchmarkRSACeiling (mailer package) signing with the
#      same key on all cores for CEILING_TIME, just before and just after
#      the signed send, averaged: signatures/s and CPU per signature;
#   4. the send again with an Ed25519 key (RFC 8463), for comparison;
#   5. the sink's message counter must have grown by exactly N in each send
#      and Herald must report N sent.
# Once, after the rounds: OpenSSL's own RSA-2048 ceiling on all cores
# (`openssl speed -multi`), for reference: the fastest RSA this machine has,
# not what Herald can use.
# At the end the medians are printed: Herald's rate with DKIM, the ceiling,
# their ratio (the median of the rounds' ratios), and the CPU per message.
# The CPU ratio is the same comparison in CPU time, which the other jobs on
# a shared machine inflate far less than wall time: the ceiling's CPU
# per signature over the CPU per delivered message, of Herald and the sink
# together (both run on these cores) and of Herald alone (the rate if the
# relay ran elsewhere).
# Needs: Postfix's smtp-sink (apt-get install postfix; postfix itself need
# not run), openssl, GNU time.
set -euo pipefail
rounds=${1:-3}
N=${N:-20000}
CONNS=${CONNS:-64}
WORKERS=${WORKERS:-64}
BATCH=${BATCH:-500}
PORT=${PORT:-2725}
CEILING_TIME=${CEILING_TIME:-5s}
cd "$(dirname "$0")/.."
. bench/lib.sh
for t in /usr/sbin/smtp-sink /usr/bin/time; do
  [ -x "$t" ] || { echo "$t is missing (apt-get install postfix time)" >&2; exit 1; }
done
command -v openssl >/dev/null || { echo "openssl is missing" >&2; exit 1; }
cores=$(nproc)

work=$(mktemp -d)
sinkpid=
cleanup() {
  [ -n "$sinkpid" ] && kill "$sinkpid" 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "work directory kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
go build -o "$work/herald" ./cmd/herald
go test -c -o "$work/mailer.test" ./mailer
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/dkim.pem" 2>/dev/null
openssl genpkey -algorithm ed25519 -out "$work/dkim-ed25519.pem" 2>/dev/null

# sink_cpu prints the sink's CPU time so far in clock ticks (utime+stime).
sink_cpu() { awk '{print $14 + $15}' "/proc/$sinkpid/stat"; }
hz=$(getconf CLK_TCK)

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
  port: $PORT
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
bench_articles "$work/articles"
awk -v n="$N" 'BEGIN { print "email,name,newsletters"; for (i = 0; i < n; i++) printf "reader%d@example%d.org,Reader %d,daily\n", i, i % 997, i }' >"$work/readers.csv"

require_free_port "$PORT"
smtp-sink -c -u root "127.0.0.1:$PORT" 1000 >"$work/sink.out" 2>&1 &
sinkpid=$!
sleep 0.5
export HERALD_CONFIG="$work/config.yaml"

# send LABEL [DKIM env...]: a fresh database, then one timed send. Appends
# "rate herald_cpu_us_per_msg sink_cpu_us_per_msg rss_kib" to $work/LABEL.txt.
send() {
  local label=$1; shift
  rm -f "$work"/herald.db*
  "$work/herald" subscribers import "$work/readers.csv" --status active >/dev/null
  "$work/herald" articles import "$work/articles" >/dev/null
  local before sink0 sink1 got sent secs user sys rss
  before=$(wait_count); sink0=$(sink_cpu)
  env "$@" /usr/bin/time -f '%e %U %S %M' -o "$work/time.txt" "$work/herald" digest send daily >"$work/send.out" 2>"$work/send.err" ||
    { echo "herald digest send ($label) failed:" >&2; tail -5 "$work/send.err" >&2; exit 1; }
  got=$(( $(wait_count) - before )); sink1=$(sink_cpu)
  read -r secs user sys rss <"$work/time.txt"
  sent=$(sed -n 's/.*sent \([0-9]*\),.*/\1/p' "$work/send.out")
  [ "$got" = "$N" ] && [ "$sent" = "$N" ] ||
    { echo "MISMATCH ($label): sink received $got, herald says sent $sent, want $N" >&2; exit 1; }
  awk -v n="$N" -v s="$secs" -v u="$user" -v y="$sys" -v a="$sink0" -v b="$sink1" -v hz="$hz" -v m="$rss" -v l="$label" -v r="$r" -v ld="$(cut -d' ' -f1 /proc/loadavg)" '
    BEGIN {
      rate = n / s; hc = (u + y) * 1e6 / n; sc = (b - a) / hz * 1e6 / n
      printf "round %s %-8s %d messages in %.2f s = %.0f msg/s; CPU per message: herald %.0f us, sink %.0f us; peak RSS %d MiB; load average %s\n", r, l, n, s, rate, hc, sc, m / 1024, ld > "/dev/stderr"
      printf "%.1f %.1f %.1f %d\n", rate, hc, sc, m
    }' >>"$work/$label.txt"
}

# ceiling: one BenchmarkRSACeiling run; prints "sigs/s cpu_us_per_sig".
ceiling() {
  HERALD_BENCH_DKIM_KEY="$work/dkim.pem" "$work/mailer.test" -test.run '^$' -test.bench '^BenchmarkRSACeiling$' \
    -test.benchtime "$CEILING_TIME" -test.cpu "$cores" >"$work/ceiling.out"
  awk '/^BenchmarkRSACeiling/ {
      for (i = 1; i <= NF; i++) { if ($(i+1) == "sigs/s") s = $i; if ($(i+1) == "cpu-ns/op") c = $i }
      printf "%.1f %.1f\n", s, c / 1000 }' "$work/ceiling.out"
}

for r in $(seq "$rounds"); do
  send plain
  # The ceiling is measured just before and just after the signed send, and
  # the two averaged, so that a change in the machine's load during the
  # send counts on both sides of the ratio.
  before=$(ceiling)
  send dkim HERALD_DKIM_SELECTOR=bench HERALD_DKIM_DOMAIN=ledger.example HERALD_DKIM_PRIVATE_KEY_FILE="$work/dkim.pem"
  after=$(ceiling)
  echo "$before $after" | awk -v r="$r" '{
      s = ($1 + $3) / 2; c = ($2 + $4) / 2
      printf "round %s ceiling  %.0f RSA-2048 signatures/s on all cores (%.0f before the send, %.0f after), %.0f us CPU per signature\n", r, s, $1, $3, c > "/dev/stderr"
      printf "%.1f %.1f\n", s, c }' >>"$work/ceiling.txt"
  # dkim.txt: rate herald_cpu sink_cpu rss; ceiling.txt: sigs/s cpu_per_sig
  paste -d' ' <(tail -1 "$work/dkim.txt") <(tail -1 "$work/ceiling.txt") |
    awk -v r="$r" '{
      printf "round %s ratio    %.2f wall (herald with DKIM / ceiling); CPU: %.2f with the sink, %.2f herald alone\n", r, $1 / $5, $6 / ($2 + $3), $6 / $2 > "/dev/stderr"
      print $1 / $5, $6 / ($2 + $3), $6 / $2 }' >>"$work/ratio.txt"
  send ed25519 HERALD_DKIM_SELECTOR=bench HERALD_DKIM_DOMAIN=ledger.example HERALD_DKIM_PRIVATE_KEY_FILE="$work/dkim-ed25519.pem"
done

openssl speed -seconds 3 -multi "$cores" rsa2048 2>/dev/null | awk '/^rsa 2048/ {print $(NF-1)}' >"$work/openssl.txt" || true

col() { awk -v c="$2" '{print $c}' "$work/$1.txt" | median; }
printf 'MEDIAN (N=%s rounds=%s cores=%s conns=%s workers=%s batch=%s)\n' "$N" "$rounds" "$cores" "$CONNS" "$WORKERS" "$BATCH"
printf '  without DKIM: %s msg/s; CPU per message herald %s us, sink %s us\n' "$(col plain 1)" "$(col plain 2)" "$(col plain 3)"
printf '  with DKIM:    %s msg/s; CPU per message herald %s us, sink %s us; peak RSS %s MiB\n' "$(col dkim 1)" "$(col dkim 2)" "$(col dkim 3)" "$(( $(col dkim 4) / 1024 ))"
printf '  Ed25519 DKIM: %s msg/s; CPU per message herald %s us, sink %s us\n' "$(col ed25519 1)" "$(col ed25519 2)" "$(col ed25519 3)"
printf '  RSA ceiling:  %s signatures/s (Go crypto/rsa, %s cores), %s us CPU per signature\n' "$(col ceiling 1)" "$cores" "$(col ceiling 2)"
printf '  OpenSSL:      %s signatures/s (openssl speed -multi %s rsa2048, once, for reference)\n' "$(cat "$work/openssl.txt")" "$cores"
printf 'RATIO herald with DKIM / RSA ceiling = %.2f (wall: messages/s over signatures/s; rounds: %s)\n' "$(col ratio 1)" "$(awk '{printf "%.2f ", $1}' "$work/ratio.txt")"
printf 'CPU RATIO = %.2f with the sink, %.2f Herald alone (CPU per signature over CPU per delivered message)\n' "$(col ratio 2)" "$(col ratio 3)"
