#!/usr/bin/env bash
# What a shadow costs the live traffic (#23): the tea-oil shop's refund
# step under load, in short windows alternately without and with a shadow
# of a candidate (the refund policy with a 15-day window) on 100% of its
# decisions. Each run pools the latencies of its windows of each kind
# (wrk's histograms, tests/load/pool.py), so that a hiccup of the VM
# lands in one window of one kind instead of deciding a whole run; the
# order alternates (without-with, then with-without). Prints per run the
# req/s, p50 and p99 of each kind, the p99 ratio, and the decisions the
# shadow compared and dropped; then the per-window p99 ratios.
#   bash tests/load/shadow-impact.sh [RUNS] [PAIRS] [SECONDS] [CONNS]  (3, 8, 2, 16)
# KEFU_SHADOW_COMPONENT and KEFU_SHADOW_CONFIG shadow another candidate
# (e.g. a test guest that loops until its timeout).
# Not part of tests/run.sh: figures go to docs/PERFORMANCE.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs="${1:-3}"
pairs="${2:-8}"
secs="${3:-2}"
conns="${4:-16}"
source plugins/setup.sh
source tests/load/common.sh
need_wrk
kefu_build_plugins >/dev/null 2>&1
cargo build --release -p kefu >/dev/null 2>&1
kefu="${KEFU_BIN:-$CARGO_TARGET_DIR/release/kefu}"

# KEFU_LOAD_TMPFS=1: the data directory in memory, so that the disk's own
# stalls (an fsync waiting a second on this VM) land in neither kind.
work="$(mktemp -d ${KEFU_LOAD_TMPFS:+-p /dev/shm})"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
export KEFU_LOAD_KEY="load-test-key" KEFU_ADMIN_TOKEN="load-admin"
tea_oil_refund_shop
start_server
api="$addr/v1/shops/tea-oil/steps/refund-policy/shadow"
candidate="${KEFU_SHADOW_COMPONENT:-$KEFU_PLUGIN_DIR/kefu_refund_policy.wasm}"
config="${KEFU_SHADOW_CONFIG:-$work/candidate.toml}"
auth="Authorization: Bearer $KEFU_ADMIN_TOKEN"

# One window of load, its histogram appended to "$work/$1.hist"; prints
# its own "requests p50 p99".
window() {
    rm -f "$work/one.hist"
    KEFU_LATENCY_OUT="$work/one.hist" KEFU_BODY=examples/requests/refund-policy/no-reason.json \
        KEFU_PATH=/v1/shops/tea-oil/refund-decision \
        wrk -t2 -c"$conns" -d"${secs}s" -s tests/load/post.lua "$addr" > /dev/null
    cat "$work/one.hist" >> "$work/$1.hist"
    python3 tests/load/pool.py "$work/one.hist"
}
without() { window without; }
with() {
    curl -sf -X POST -H "$auth" -F "component=@$candidate" -F "config=@$config" "$api" > /dev/null
    window with
    curl -sf -X DELETE -H "$auth" "$api" |
        python3 -c 'import json,sys; v=json.load(sys.stdin); print(v["report"]["replayed"], v["dropped"])' >> "$work/seen"
}

echo "run  without: req/s p50 p99 | with shadow: req/s p50 p99 | p99 ratio | shadow compared/dropped | per-window p99 ratios"
for r in $(seq 1 "$runs"); do
    rm -f "$work/without.hist" "$work/with.hist" "$work/seen"
    ratios=""
    for i in $(seq 1 "$pairs"); do
        if (( i % 2 )); then
            read -r _ _ b0 < <(without)
            read -r _ _ b1 < <(with)
        else
            read -r _ _ b1 < <(with)
            read -r _ _ b0 < <(without)
        fi
        ratios+="$(python3 -c "print(f'{$b1 / $b0:.2f}')") "
    done
    read -r n0 a0 b0 < <(python3 tests/load/pool.py "$work/without.hist")
    read -r n1 a1 b1 < <(python3 tests/load/pool.py "$work/with.hist")
    span=$((pairs * secs))
    seen="$(awk '{c += $1; d += $2} END {print c "/" d}' "$work/seen")"
    ratio="$(python3 -c "print(f'{$b1 / $b0:.2f}')")"
    echo "$r    $((n0 / span)) $a0 $b0 | $((n1 / span)) $a1 $b1 | $ratio | $seen | $ratios"
done
