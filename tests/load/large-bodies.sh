#!/usr/bin/env bash
# Shop A floods large bodies while shop B's one client measures its latency.
#   bash tests/load/large-bodies.sh [BODY_KIB]     (default 100)
# Two shops with the apparel plugins, a fresh store. Prints B's throughput
# and p99 alone, then while A's two connections send greetings with a
# BODY_KIB message for 6 s; A's answers; and how much the store grew.
# Not part of tests/run.sh: figures go to docs/PERFORMANCE.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
source plugins/setup.sh
source tests/load/common.sh
need_wrk
cargo build --release -p kefu >/dev/null 2>&1
kefu="${KEFU_BIN:-$CARGO_TARGET_DIR/release/kefu}"
kib="${1:-100}"
work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/shops"
for shop in a b; do cp -r examples/shops/apparel "$work/shops/$shop"; done
serve_config
python3 - "$kib" "$work/big.json" <<'PY'
import json, sys
body = json.load(open("examples/requests/greeting/first-visit.json"))
body["message"] = "便宜" + "x" * int(sys.argv[1]) * 1024
json.dump(body, open(sys.argv[2], "w"))
PY
export KEFU_LOAD_KEY=load-key KEFU_KEY_APPAREL=load-key
start_server
b() {
    KEFU_BODY=examples/requests/greeting/first-visit.json KEFU_PATH=/v1/shops/b/greeting \
        wrk -t1 -c1 -d4s --latency -s tests/load/post.lua "$addr" 2>>"$work/b.err" |
        awk '/Requests\/sec/ {rps=$2} $1=="99%" {p99=$2} END {print rps " req/s, p99 " p99}'
}
echo "B alone:          $(b)"
KEFU_BODY="$work/big.json" KEFU_PATH=/v1/shops/a/greeting KEFU_ANY_STATUS=1 \
    wrk -t1 -c2 -d6s -s tests/load/post.lua "$addr" > "$work/a.txt" &
flood=$!
sleep 1
echo "B while A floods: $(b)"
wait "$flood"
echo "A: $(awk '/Requests\/sec/ {print $2 " req/s"} /Non-2xx/ {print "(" $NF " refused)"}' "$work/a.txt" | tr '\n' ' ')"
echo "B's non-200 answers: $(grep -c 'non-200' "$work/b.err" || true)"
echo "store: $(du -sh "$work/data" | cut -f1)"
