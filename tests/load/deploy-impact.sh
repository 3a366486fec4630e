#!/usr/bin/env bash
# What a deploy costs the other shops: PAIRS rounds of the tea-oil
# shop's refund step under load, alternately without deploys, with
# deploys of a Python refund policy and a JavaScript greeting (each made
# unique, so they compile) to the apparel shop during the run, and with
# the same deploys after the compiled-function cache was emptied ("cold":
# every function compiled, as the first Python or JavaScript component a
# node ever sees). Prints tea-oil's req/s, p50 and p99 each way, the p99
# ratios, and how long the deploys took under load; first the same
# deploys on the idle server, cold and warm.
#   bash tests/load/deploy-impact.sh [PAIRS] [SECONDS] [CONNS]
#   (defaults: 3 pairs, 20 s runs, 16 connections)
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$(pwd)"
pairs="${1:-3}"
secs="${2:-20}"
conns="${3:-16}"
source plugins/setup.sh
source tests/load/common.sh
need_wrk
kefu_build_polyglot >/dev/null
cargo build --release -p kefu >/dev/null 2>&1
kefu="${KEFU_BIN:-$CARGO_TARGET_DIR/release/kefu}"

work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/shops"
cp -r examples/shops/tea-oil examples/shops/apparel "$work/shops/"
export KEFU_KEY_TEA_OIL=load-tea KEFU_KEY_APPAREL=load-apparel KEFU_ADMIN_TOKEN=load-admin
cat > "$work/kefu.toml" <<TOML
listen = "127.0.0.1:0"
data_dir = "$work/data"
shops_dir = "$work/shops"
cache_dir = "$work/cache"
deploy_wait_secs = 600

# The loaded shop measures latency, not its quotas.
[quotas]
concurrent_calls = 256
cpu_ms_per_window = 100000000
log_kib_per_window = 100000000
TOML
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

# Deploy $1 to apparel's step $2; prints the seconds it took.
deploy() {
    unique "$1" "$work/deploy.wasm"
    curl -s -o "$work/deploy.out" -w '%{time_total}' -X POST \
        -H "Authorization: Bearer $KEFU_ADMIN_TOKEN" --data-binary "@$work/deploy.wasm" \
        "$addr/v1/shops/apparel/steps/$2/versions"
    grep -q '"status":"active"' "$work/deploy.out" || { cat "$work/deploy.out" >&2; exit 1; }
}
py="examples/shops/apparel/plugins/refund.wasm"
js="examples/shops/tea-oil/plugins/greeting.wasm"

# tea-oil's refund step under load for $secs; prints "req/s p50 p99".
load() {
    local out
    out="$(KEFU_PATH=/v1/shops/tea-oil/refund-decision KEFU_LOAD_KEY="$KEFU_KEY_TEA_OIL" \
        KEFU_BODY="$root/examples/requests/refund-policy/unshipped.json" \
        wrk -t2 -c"$conns" -d"${secs}s" --latency -s tests/load/post.lua "$addr" 2>"$work/wrk.err")"
    if [ -s "$work/wrk.err" ]; then
        echo "non-200 answers under load:" >&2; head -3 "$work/wrk.err" >&2; exit 1
    fi
    echo "$(awk '/Requests\/sec/ {print $2}' <<<"$out") $(awk '$1=="50%" {print $2}' <<<"$out") $(awk '$1=="99%" {print $2}' <<<"$out")"
}
ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) print v/1000; else if (v ~ /ms$/) print v+0; else print v*1000 }'; }

# Forget every compiled function (the next compile is a first one).
cold() { rm -rf "$work/cache/functions"; }
cold
echo "==> on the idle server, cold: Python $(deploy "$py" refund-policy) s, JavaScript $(deploy "$js" greeting) s"
echo "==> on the idle server, warm: Python $(deploy "$py" refund-policy) s, JavaScript $(deploy "$js" greeting) s"
printf '\n%-5s %-10s %9s %9s %9s   %s\n' pair run "req/s" p50 p99 "deploys (s, under load)"
for i in $(seq 1 "$pairs"); do
    read -r rps p50 p99 <<<"$(load)"
    printf '%-5s %-10s %9s %9s %9s\n' "$i" baseline "$rps" "$p50" "$p99"
    base="$p99"
    for run in deploying cold; do
        [ "$run" = cold ] && cold
        (sleep 1; echo "$(deploy "$py" refund-policy) $(deploy "$js" greeting)" > "$work/took") &
        deployer=$!
        read -r rps p50 p99 <<<"$(load)"
        wait "$deployer"
        ratio="$(awk -v a="$(ms "$p99")" -v b="$(ms "$base")" 'BEGIN { printf "%.2f", a / b }')"
        printf '%-5s %-10s %9s %9s %9s   %s  (p99 %sx baseline)\n' "$i" "$run" "$rps" "$p50" "$p99" "$(cat "$work/took")" "$ratio"
    done
done
