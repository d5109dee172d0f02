#!/usr/bin/env bash
# Import benchmark: the same generated CSV imported by the CLI and over HTTP
# (POST /api/v1/subscribers/import against herald serve), in the same run,
# each into a fresh SQLite database; rows/s and peak RSS of each.
#
#   bench/import.sh [ROWS]     (default: 1,000,000)
#
# The HTTP upload is streamed by curl from the file (-T); the figure is the
# server's peak RSS (GNU time on herald serve), so it shows whether the
# server holds the body. Run from the repository root.
set -euo pipefail
rows=${1:-1000000}
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/herald" ./cmd/herald
python3 -c "import sys
w = sys.stdout.write
w('email,name,newsletters\n')
for i in range($rows): w(f'reader{i}@example{i%997}.org,Reader {i},daily\n')" >"$work/rows.csv"
echo "$rows rows, $(du -h "$work/rows.csv" | cut -f1)"

env_for() { # DIR
  echo HERALD_DATABASE_DSN="$1/herald.db" HERALD_MAIL_OUTBOX_DIR="$1/outbox" HERALD_LOG_LEVEL=warn
}

# CLI
mkdir -p "$work/cli"
env $(env_for "$work/cli") /usr/bin/time -f '%e %M' -o "$work/cli.time" \
  "$work/herald" subscribers import "$work/rows.csv" --status active --config config.yaml >"$work/cli.out"
read -r cli_s cli_kib <"$work/cli.time"
tail -n 1 "$work/cli.out"

# HTTP
mkdir -p "$work/http"
token=bench-$RANDOM$RANDOM
env $(env_for "$work/http") HERALD_HTTP_ADDR=127.0.0.1:8097 HERALD_HTTP_BASE_URL=http://127.0.0.1:8097 \
  HERALD_ADMIN_TOKEN="$token" HERALD_DELIVERY_WORKERS=0 \
  /usr/bin/time -f '%e %M' -o "$work/serve.time" "$work/herald" serve --config config.yaml &
spid=$!
for _ in $(seq 100); do curl -fs -o /dev/null http://127.0.0.1:8097/healthz && break; sleep 0.1; done
http_s=$(curl -fsS -o "$work/http.json" -w '%{time_total}' -X POST -T "$work/rows.csv" \
  -H "Authorization: Bearer $token" -H 'Content-Type: text/csv' \
  'http://127.0.0.1:8097/api/v1/subscribers/import?status=active')
# Stop herald itself (GNU time would die of the signal and lose the figure).
kill -TERM "$(pgrep -P "$spid")"; wait "$spid" 2>/dev/null || true
read -r _ http_kib <"$work/serve.time"
python3 -c "import json,sys; print(json.load(open('$work/http.json'))['summary'])"

awk -v r="$rows" -v cs="$cli_s" -v ck="$cli_kib" -v hs="$http_s" -v hk="$http_kib" 'BEGIN {
  printf "CLI   %.1f s  %d rows/s  peak RSS %d MiB\n", cs, r/cs, ck/1024
  printf "HTTP  %.1f s  %d rows/s  peak RSS %d MiB (herald serve)\n", hs, r/hs, hk/1024 }'
