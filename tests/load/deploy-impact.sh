#!/usr/bin/env bash
# What a deploy costs the other shops (#31): the tea-oil shop's refund
# step under load, in short windows, while API deploys of a Python refund
# policy then a JavaScript greeting (each made unique, so each compiles)
# go to the apparel shop ("with": windows back to back until both are
# live), and as many windows with no deploy ("without"; the order of the
# two kinds alternates per cycle). Each run pools the latencies of its
# windows of each kind (wrk's histograms, tests/load/pool.py), so that a
# hiccup of the VM lands in one window instead of deciding a run. Prints
# per run the req/s, p50 and p99 of each kind, the p99 ratio and how long
# the deploys took under load; first the same deploys on the idle server,
# cold and warm.
#   bash tests/load/deploy-impact.sh [RUNS] [CYCLES] [SECONDS] [CONNS]  (3, 2, 2, 16)
# KEFU_DEPLOY_COLD=1 empties the compiled-function cache before each
# deploy (every function compiled, as the first Python or JavaScript
# component a node ever sees); KEFU_LOAD_TMPFS=1 puts the data and cache
# directories in memory (the disk's own stalls land in neither kind;
# the decision log then takes memory, ~2 KB an answer: keep runs short);
# KEFU_BIN picks the binary. Not part of tests/run.sh: figures go to
# docs/PERFORMANCE.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$(pwd)"
runs="${1:-3}"
cycles="${2:-2}"
secs="${3:-2}"
conns="${4:-16}"
source plugins/setup.sh
source tests/load/common.sh
need_wrk
kefu_build_polyglot >/dev/null
cargo build --release -p kefu >/dev/null 2>&1
kefu="${KEFU_BIN:-$CARGO_TARGET_DIR/release/kefu}"

work="$(mktemp -d ${KEFU_LOAD_TMPFS:+-p /dev/shm})"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/shops"
cp -r examples/shops/tea-oil examples/shops/apparel "$work/shops/"
export KEFU_KEY_TEA_OIL=load-tea KEFU_KEY_APPAREL=load-apparel KEFU_ADMIN_TOKEN=load-admin
# A deploy answers when it is live, however long the compile takes; the
# loaded shop measures latency, not its quotas.
serve_config "deploy_wait_secs = 600" "quotas.concurrent_calls = 1000" \
    "quotas.cpu_ms_per_window = 100000000" "quotas.log_kib_per_window = 100000000"
start_server

# A copy of $1 with a custom section of its own (a new digest: compiled).
unique() {
    python3 - "$1" "$2" <<'PY'
import sys, time
data = open(sys.argv[1], "rb").read()
payload = b"\x09kefu-load" + str(time.time_ns()).encode()
open(sys.argv[2], "wb").write(data + b"\x00" + bytes([len(payload)]) + payload)
PY
}

# Deploy $1 to apparel's step $2; prints the seconds it took, or FAILED.
deploy() {
    unique "$1" "$work/deploy.wasm"
    local took
    took="$(curl -s -o "$work/deploy.out" -w '%{time_total}' -X POST \
        -H "Authorization: Bearer $KEFU_ADMIN_TOKEN" --data-binary "@$work/deploy.wasm" \
        "$addr/v1/shops/apparel/steps/$2/versions")"
    if grep -q '"status":"active"' "$work/deploy.out"; then echo "$took"; else echo FAILED; fi
}
py="examples/shops/apparel/plugins/refund.wasm"
js="examples/shops/tea-oil/plugins/greeting.wasm"
both() { echo "$(deploy "$py" refund-policy) $(deploy "$js" greeting)"; }

# Forget every compiled function (the next compile is a first one).
cold() { rm -rf "$work/cache/functions"; }
maybe_cold() { if [ -n "${KEFU_DEPLOY_COLD:-}" ]; then cold; fi; }

# One window of tea-oil's refund step under load, its histogram appended
# to "$work/$1.hist".
window() {
    rm -f "$work/one.hist"
    KEFU_LATENCY_OUT="$work/one.hist" KEFU_PATH=/v1/shops/tea-oil/refund-decision \
        KEFU_LOAD_KEY="$KEFU_KEY_TEA_OIL" \
        KEFU_BODY="$root/examples/requests/refund-policy/unshipped.json" \
        wrk -t2 -c"$conns" -d"${secs}s" -s tests/load/post.lua "$addr" > /dev/null 2> "$work/wrk.err"
    if [ -s "$work/wrk.err" ]; then
        echo "non-200 answers under load:" >&2; head -3 "$work/wrk.err" >&2; exit 1
    fi
    cat "$work/one.hist" >> "$work/$1.hist"
}

# Windows back to back while both deploys run; prints how many.
with() {
    maybe_cold
    both > "$work/took" &
    local deployer=$! n=0
    while kill -0 "$deployer" 2>/dev/null; do window with; n=$((n + 1)); done
    wait "$deployer"
    grep -q FAILED "$work/took" && { echo "a deploy failed: $(cat "$work/deploy.out")" >&2; exit 1; }
    cat "$work/took" >> "$work/times"
    echo "$n"
}
# $1 windows without a deploy, after a second for the last one to settle.
without() {
    sleep 1
    for _ in $(seq 1 "$1"); do window without; done
}

cold
echo "==> on the idle server, cold: Python, JavaScript $(both) s"
echo "==> on the idle server, warm: Python, JavaScript $(both) s"
echo "run  without: req/s p50 p99 | with deploys: req/s p50 p99 | p99 ratio | deploys under load (Python JavaScript, s)"
last=5
for r in $(seq 1 "$runs"); do
    rm -f "$work/without.hist" "$work/with.hist" "$work/times"
    w0=0 w1=0
    for c in $(seq 1 "$cycles"); do
        if (( c % 2 )); then
            n="$(with)"
            without "$n"
            w0=$((w0 + n))
        else
            without "$last"
            w0=$((w0 + last))
            n="$(with)"
        fi
        last="$n"
        w1=$((w1 + n))
    done
    read -r n0 a0 b0 < <(python3 tests/load/pool.py "$work/without.hist")
    read -r n1 a1 b1 < <(python3 tests/load/pool.py "$work/with.hist")
    ratio="$(python3 -c "print(f'{$b1 / $b0:.2f}')")"
    echo "$r    $((n0 / (w0 * secs))) $a0 $b0 | $((n1 / (w1 * secs))) $a1 $b1 | $ratio | $(paste -sd' ' "$work/times")"
done
