# Shared by the bench/ scripts (sourced, not run): the median of a column of
# numbers, smtp-sink's message counter, and the five articles every
# delivery benchmark sends. The sink functions read "$work/sink.out", the
# output of `smtp-sink -c`, so the sourcing script sets $work.

# median prints the median of the numbers on standard input, one a line.
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# sink_count prints the sink's running message counter (smtp-sink -c writes
# "sess=.. quit=.. mesg=N" lines, separated by carriage returns).
sink_count() { tr '\r' '\n' <"$work/sink.out" | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -1 | sed 's/^$/0/'; }

# require_free_port fails unless nothing listens on the loopback TCP ports
# given: Postfix's smtp-sink binds with SO_REUSEPORT, so a second sink (a
# stray one, or another bench script's) on the same port silently takes
# half the connections, and the counts no longer match.
require_free_port() {
  local p
  for p in "$@"; do
    if ss -Hltn "sport = :$p" | grep -q .; then
      echo "port $p is already in use (another smtp-sink or bench script?): stop it first" >&2
      exit 1
    fi
  done
}

# wait_count waits until the sink's counter stops moving (a session may
# still be closing) and prints it.
wait_count() {
  local last=-1 now
  for _ in $(seq 50); do now=$(sink_count); [ "$now" = "$last" ] && break; last=$now; sleep 0.1; done
  echo "${now:-0}"
}

# bench_articles DIR writes five Markdown articles as a news site publishes
# them (headline, byline, picture, a one-sentence summary, dated within the
# last day) into DIR, for `herald articles import`.
bench_articles() {
  mkdir -p "$1"
  local i
  for i in 1 2 3 4 5; do
    cat >"$1/story-$i.md" <<EOT
---
title: "Council Extends the Peacekeeping Mission in South Sudan for a Year ($i)"
url: https://ledger.example/$(date -u +%Y/%m/%d)/council-extends-mission-$i/
author: Reporter Number $i
date: $(date -u -d "-$i hours" +%Y-%m-%dT%H:%M:%SZ)
summary: >
  Delegates worked through the night on the final text, trading amendments on
  financing, monitoring and the timetable for a review conference.
image: https://ledger.example/images/story-$i.jpg
---

Delegates worked through the night on the final text, trading amendments on
financing, monitoring and the timetable for a review conference. Several
smaller states said the draft still leaves them exposed.
EOT
  done
}
