#!/usr/bin/env bash
# How fast a backlog of workflow events drains, and the CPU each costs:
#   bash tests/load/events-drain.sh [FILL_SECONDS] [WINDOW_SECONDS] [RUNS]
#   (defaults 2, 6, 3)
# Each run starts a fresh server with one shop on the default flow, fills
# its inbox for FILL_SECONDS with batches of 100 events (each a buyer's
# message to a new buyer, 4 connections), then over WINDOW_SECONDS counts
# the events processed and the server's CPU time: events/s, the cores
# busy, and CPU µs per event. KEFU_BIN picks the binary; with KEFU_BIN_B
# too, each run measures both, alternating, and prints their ratio.
# Not part of tests/run.sh: figures go to docs/PERFORMANCE.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
fill="${1:-2}"
window="${2:-6}"
runs="${3:-3}"
source plugins/setup.sh
source tests/load/common.sh
need_wrk
cargo build --release -p kefu >/dev/null 2>&1
a="${KEFU_BIN:-$CARGO_TARGET_DIR/release/kefu}"
b="${KEFU_BIN_B:-}"
export KEFU_LOAD_KEY="load-test-key"
pid=""
work=""
trap 'kill "$pid" 2>/dev/null || true; [ -n "$work" ] && rm -rf "$work"' EXIT

drain() { # drain BINARY: prints "events/s busy% us/event"
    kefu="$1"
    work="$(mktemp -d)"
    events_shop
    start_server
    processed() { curl -s "$addr/metrics" | awk '$1 == "kefu_events_total{status=\"processed\"}" {v=$2} END {print v+0}'; }
    cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
    KEFU_BODY="$work/event.json" KEFU_PATH="/v1/shops/shop-1/events" KEFU_BATCH=100 KEFU_RUN=r \
        wrk -t1 -c4 -d"${fill}s" -s tests/load/events.lua "$addr" > /dev/null
    local p0 c0 t0 p1 c1 t1
    p0="$(processed)"; c0="$(cpu)"; t0="$(date +%s.%N)"
    sleep "$window"
    p1="$(processed)"; c1="$(cpu)"; t1="$(date +%s.%N)"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$work"; work=""
    awk -v p0="$p0" -v p1="$p1" -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { n = p1 - p0; d = t1 - t0; printf "%.0f %.0f %.0f", n / d, 100 * (c1 - c0) / hz / d, (n > 0 ? 1e6 * (c1 - c0) / hz / n : 0) }'
}

show() { printf "%6s events/s, %3s%% busy, %4s us/event" "$1" "$2" "$3"; }
for run in $(seq 1 "$runs"); do
    read -r ea ba ua <<< "$(drain "$a")"
    if [ -z "$b" ]; then
        echo "run $run: $(show "$ea" "$ba" "$ua")"
        continue
    fi
    read -r eb bb ub <<< "$(drain "$b")"
    echo "run $run: A $(show "$ea" "$ba" "$ua") | B $(show "$eb" "$bb" "$ub") | A/B $(awk -v x="$ea" -v y="$eb" 'BEGIN {printf "%.2f", x / y}')"
done
