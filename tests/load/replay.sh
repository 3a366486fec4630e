#!/usr/bin/env bash
# Replay benchmark (#23): fill the tea-oil shop's log with no-reason return
# requests (delivered 1 to 20 days before, random amounts) through the HTTP
# API, stop the server, then `kefu replay` the refund policy with a 15-day
# window over the first N of them, timed, with its peak resident memory.
#   bash tests/load/replay.sh [N] [FILL_SECONDS]   (defaults: 100000, 20)
# Not part of tests/run.sh: figures go to docs/PERFORMANCE.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
n="${1:-100000}"
fill="${2:-20}"
source plugins/setup.sh
source tests/load/common.sh
need_wrk
command -v /usr/bin/time >/dev/null || apt-get install -y time >/dev/null
kefu_build_plugins >/dev/null 2>&1
cargo build --release -p kefu >/dev/null 2>&1
kefu="${KEFU_BIN:-$CARGO_TARGET_DIR/release/kefu}"

work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
export KEFU_LOAD_KEY="load-test-key"
tea_oil_refund_shop
# The no-reason example, its delivery time, amount and order id left to fill.
python3 - "$work/body.json" <<'PY'
import json, sys
body = json.load(open("examples/requests/refund-policy/no-reason.json"))
body["order"]["delivered_at"] = "__DELIVERED__"
body["order"]["id"] = "__ORDER__"
body["amount"] = "__AMOUNT__"
text = json.dumps(body, ensure_ascii=False)
text = text.replace('"__DELIVERED__"', "__DELIVERED__").replace('"__AMOUNT__"', "__AMOUNT__")
open(sys.argv[1], "w").write(text)
PY

start_server
echo "==> filling the log for $fill s"
KEFU_BODY="$work/body.json" wrk -t2 -c32 -d"${fill}s" -s tests/load/replay-post.lua "$addr" | grep -E "requests in|Requests/sec"
kill "$pid"; wait "$pid" 2>/dev/null || true
echo "==> kefu replay of $n refund decisions (15-day window instead of 7)"
/usr/bin/time -f "elapsed %e s, max resident %M KB" "$kefu" replay --data "$work/data" --shop tea-oil \
    --step refund-policy --candidate "$KEFU_PLUGIN_DIR/kefu_refund_policy.wasm" \
    --config "$work/candidate.toml" --limit "$n" --json > "$work/report.json" 2> "$work/time"
tail -1 "$work/time"
python3 - "$work/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
flips = ", ".join(f"{g['change']}: {g['count']}" for g in r["flips"])
print(f"replayed {r['replayed']}, changed {r['changed']} ({flips}), "
      f"{r['refund_delta_yuan']:+.2f} yuan, replay itself {r['took_ms']} ms")
PY
