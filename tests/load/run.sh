#!/usr/bin/env bash
# HTTP load test of `kefu serve` on 127.0.0.1 with wrk, bounded in time.
#   bash tests/load/run.sh [SHOPS] [SECONDS]     (defaults: 1000 shops, 10 s)
# Installs wrk (Debian) if missing. Prints startup time and resident memory
# with SHOPS shops from the compiled cache, then throughput and latency per
# step at 1, 16 and 64 connections. Not part of tests/run.sh: figures go
# to docs/PERFORMANCE.md. KEFU_LOAD_STEPS and KEFU_LOAD_CONNS narrow the
# table (e.g. KEFU_LOAD_STEPS=greeting KEFU_LOAD_CONNS=64).
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$(pwd)"
shops="${1:-1000}"
secs="${2:-10}"
source plugins/setup.sh
source tests/load/common.sh
need_wrk
cargo build --release -p kefu >/dev/null 2>&1
kefu="${KEFU_BIN:-$CARGO_TARGET_DIR/release/kefu}"

work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
export KEFU_LOAD_KEY="load-test-key"
many_shops "$shops"

rss_mb() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$pid/status"; }

echo "==> first start: $shops shops, plugins compiled"
start_server
echo "    $(grep -o 'in [0-9]* ms' "$work/out" | sed 's/^/ready /'), RSS $(rss_mb) MB"
kill "$pid"; wait "$pid" 2>/dev/null || true
echo "==> restart from the compiled cache"
start_server
echo "    $(grep -o 'in [0-9]* ms' "$work/out" | sed 's/^/ready /'), RSS $(rss_mb) MB"

printf '\n%-20s %5s %10s %9s %9s %7s\n' step conns "req/s" "p50" "p99" errors
for step in ${KEFU_LOAD_STEPS:-greeting order-confirmation refund-decision revisit-plan}; do
    case "$step" in
        greeting) body=greeting/discount ;;
        order-confirmation) body=order-confirmation/ok-with-remark ;;
        refund-decision) body=refund-policy/unshipped ;;
        revisit-plan) body=revisit-planner/delivered ;;
    esac
    for conns in ${KEFU_LOAD_CONNS:-1 16 64}; do
        threads=$(( conns < 2 ? 1 : 2 ))
        out="$(KEFU_SHOPS="$shops" KEFU_STEP="$step" KEFU_BODY="$root/examples/requests/$body.json" \
            wrk -t"$threads" -c"$conns" -d"${secs}s" --latency -s tests/load/post.lua "$addr" 2>"$work/wrk.err")"
        rps="$(echo "$out" | awk '/Requests\/sec/ {print $2}')"
        p50="$(echo "$out" | awk '$1=="50%" {print $2}')"
        p99="$(echo "$out" | awk '$1=="99%" {print $2}')"
        errors="$(grep -c 'non-200' "$work/wrk.err" || true)"
        printf '%-20s %5s %10s %9s %9s %7s\n' "$step" "$conns" "$rps" "$p50" "$p99" "$errors"
    done
done
echo "    RSS after load: $(rss_mb) MB"
# KEFU_LOAD_METRICS=file keeps the server's /metrics after the load (flush
# durations and batch sizes, call durations) for a closer look.
if [ -n "${KEFU_LOAD_METRICS:-}" ]; then
    curl -s "$addr/metrics" > "$KEFU_LOAD_METRICS"
fi
