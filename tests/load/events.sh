#!/usr/bin/env bash
# Workflow events through the default flow, measured beside direct step
# calls in the same run (alternating, bounded in time):
#   bash tests/load/events.sh [SECONDS] [ROUNDS]     (defaults: 10 s, 2)
# Each event is a buyer's message to a new buyer: the flow, the greeting
# step, the flow again, one action kept. Per round it prints
#   - direct: greeting calls answered per second (POST .../greeting, the
#     peer: one plugin call and one decision each);
#   - saturation, events one per request and in batches of 100, as fast
#     as 64 connections send them: events accepted per second (202,
#     durable in the inbox) and processed per second (from the first
#     acceptance until the inbox is empty);
#   - latency at an offered rate below that: 2,000 events/s one per
#     request (20 connections, one request each 8 ms: about 2,000 once
#     answers take their time) and 5,000 events/s in batches of 100 (6
#     connections, one batch each 115 ms after the last answer: about
#     5,000 once answers take their time), the connections taking turns
#     (tests/load/events.lua): p50 / p99
#     from acceptance to the commit of everything an event made
#     (kefu_event_latency_seconds, bucket bounds).
# Not part of tests/run.sh: figures go to docs/PERFORMANCE.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs="${1:-10}"
rounds="${2:-2}"
source plugins/setup.sh
source tests/load/common.sh
need_wrk
cargo build --release -p kefu >/dev/null 2>&1
kefu="${KEFU_BIN:-$CARGO_TARGET_DIR/release/kefu}"

work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
export KEFU_LOAD_KEY="load-test-key"
events_shop
start_server

metric() { # metric NAME [LABELS]: its value now (0 when absent)
    curl -s "$addr/metrics" | awk -v m="$1" '$1 == m {v=$2} END {print v+0}'
}
# p-th quantile (0-1) of kefu_event_latency_seconds since the counts in $1
# (a file of "le count" lines), from the histogram's buckets.
snapshot() { curl -s "$addr/metrics" | sed -n 's/^kefu_event_latency_seconds_bucket{le="\([^"]*\)"} \(.*\)$/\1 \2/p'; }
quantile() {
    snapshot | awk -v q="$2" -v before="$1" '
        BEGIN { while ((getline line < before) > 0) { split(line, a, " "); base[a[1]] = a[2] } }
        { le[NR] = $1; c[NR] = $2 - base[$1] }
        END { total = c[NR]; for (i = 1; i <= NR; i++) if (c[i] >= q * total) { printf "%s", le[i]; exit } }'
}

direct() {
    KEFU_BODY="$work/greeting.json" KEFU_PATH="/v1/shops/shop-1/greeting" \
        wrk -t2 -c64 -d"${secs}s" -s tests/load/post.lua "$addr" | awk '/Requests\/sec/ {printf "%.0f", $2}'
}

events() { # events BATCH RUN [CONNECTIONS DELAY_MS]
    local before="$work/before" processed0 start end
    snapshot > "$before"
    processed0="$(metric 'kefu_events_total{status="processed"}')"
    start="$(date +%s.%N)"
    local rps
    rps="$(KEFU_BODY="$work/event.json" KEFU_PATH="/v1/shops/shop-1/events" KEFU_BATCH="$1" KEFU_RUN="$2" \
        KEFU_DELAY_MS="${4:-0}" KEFU_CONNS="$(( ${3:-64} / 2 * 2 ))" KEFU_THREADS=2 wrk -t2 -c"${3:-64}" -d"${secs}s" -s tests/load/events.lua "$addr" \
        | awk '/Requests\/sec/ {print $2}')"
    # Wait (up to 120 s) until everything ever accepted is processed (a
    # fresh server: every event accepted once, none retried).
    local done_now
    for _ in $(seq 1 1200); do
        done_now="$(metric 'kefu_events_total{status="processed"}')"
        [ "$(awk -v d="$done_now" -v f="$(metric 'kefu_events_total{status="failed"}')" \
            -v a="$(metric kefu_events_accepted_total)" 'BEGIN {print (d + f >= a)}')" = 1 ] && break
        sleep 0.1
    done
    end="$(date +%s.%N)"
    local n=$(( ${done_now%.*} - ${processed0%.*} ))
    printf "accepted %6.0f events/s, processed %6.0f events/s (%d in %.1f s), p50 %s s, p99 %s s" \
        "$(awk -v r="$rps" -v b="$1" 'BEGIN {print r * b}')" \
        "$(awk -v n="$n" -v s="$start" -v e="$end" 'BEGIN {print n / (e - s)}')" "$n" \
        "$(awk -v s="$start" -v e="$end" 'BEGIN {print e - s}')" \
        "$(quantile "$before" 0.5)" "$(quantile "$before" 0.99)"
}

for round in $(seq 1 "$rounds"); do
    echo "==> round $round"
    echo "    direct greeting:              $(direct) req/s"
    echo "    saturation, 1 per request:    $(events 1 "r$round-one")"
    echo "    saturation, 100 per request:  $(events 100 "r$round-batch")"
    echo "    2,000/s offered, 1 per request:   $(events 1 "r$round-rate-one" 20 8)"
    echo "    5,000/s offered, 100 per request: $(events 100 "r$round-rate-batch" 6 115)"
done
