#!/usr/bin/env bash
# What a shadow costs the live traffic (#23): the tea-oil shop's refund
# step under load, alternately without and with a shadow of a candidate
# (the refund policy with a 15-day window) on 100% of its decisions;
# prints req/s, p50 and p99 of each run, the p99 ratio of each pair, and
# how many decisions the shadow compared and dropped.
#   bash tests/load/shadow-impact.sh [PAIRS] [SECONDS] [CONNS]  (3, 8, 16)
# Not part of tests/run.sh: figures go to docs/PERFORMANCE.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
pairs="${1:-3}"
secs="${2:-8}"
conns="${3:-16}"
source plugins/setup.sh
source tests/load/common.sh
need_wrk
kefu_build_plugins >/dev/null 2>&1
cargo build --release -p kefu >/dev/null 2>&1
kefu="${KEFU_BIN:-$CARGO_TARGET_DIR/release/kefu}"

work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
export KEFU_LOAD_KEY="load-test-key" KEFU_ADMIN_TOKEN="load-admin"
tea_oil_refund_shop
start_server
api="$addr/v1/shops/tea-oil/steps/refund-policy/shadow"
auth="Authorization: Bearer $KEFU_ADMIN_TOKEN"

# One run: "req/s p50 p99" (latencies in ms).
run() {
    KEFU_BODY=examples/requests/refund-policy/no-reason.json KEFU_PATH=/v1/shops/tea-oil/refund-decision \
        wrk -t2 -c"$conns" -d"${secs}s" --latency -s tests/load/post.lua "$addr" > "$work/wrk"
    python3 - "$work/wrk" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", v)
    if not m:
        sys.exit(f"cannot read the latency {v!r} in:\n{text}")
    n, unit = m.groups()
    return float(n) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]
rps = re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
print(f"{float(rps):.0f} {p50:.2f} {p99:.2f}")
PY
}

echo "pair  without: req/s p50 p99 | with shadow: req/s p50 p99 | p99 ratio | shadow compared/dropped"
for i in $(seq 1 "$pairs"); do
    read -r r0 a0 b0 < <(run)
    curl -sf -X POST -H "$auth" -F "component=@$KEFU_PLUGIN_DIR/kefu_refund_policy.wasm" \
        -F "config=@$work/candidate.toml" "$api" > /dev/null
    read -r r1 a1 b1 < <(run)
    seen="$(curl -sf -X DELETE -H "$auth" "$api" | python3 -c 'import json,sys; v=json.load(sys.stdin); print(v["report"]["replayed"], v["dropped"])')"
    ratio="$(python3 -c "print(f'{$b1 / $b0:.2f}')")"
    echo "$i     $r0 $a0 $b0 | $r1 $a1 $b1 | $ratio | $seen"
done
