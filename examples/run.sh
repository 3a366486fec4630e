#!/usr/bin/env bash
# One command: set everything up and serve the example shops.
#   bash examples/run.sh
# Builds kefu (release, default plugins bundled), then runs
# `kefu serve --config examples/kefu.toml` on 127.0.0.1:8080 with sled in
# .kefu-data/. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
source plugins/setup.sh
kefu_build_polyglot

echo "==> building kefu"
cargo build --release -p kefu
kefu="$CARGO_TARGET_DIR/release/kefu"

# Demo keys unless you set your own.
export KEFU_KEY_TEA_OIL="${KEFU_KEY_TEA_OIL:-demo-tea-oil-key}"
export KEFU_KEY_APPAREL="${KEFU_KEY_APPAREL:-demo-apparel-key}"
export KEFU_ADMIN_TOKEN="${KEFU_ADMIN_TOKEN:-demo-admin-token}"
addr="http://127.0.0.1:8080"
req="$root/examples/requests"

cat <<SAMPLES

==> sample requests (paste into another terminal once the server listens)

# Greet a buyer asking for a discount at the tea-oil shop
curl -s -X POST $addr/v1/shops/tea-oil/greeting -H 'Authorization: Bearer $KEFU_KEY_TEA_OIL' -d @$req/greeting/discount.json

# Confirm an order (remark flag, order merge)
curl -s -X POST $addr/v1/shops/tea-oil/order-confirmation -H 'Authorization: Bearer $KEFU_KEY_TEA_OIL' -d @$req/order-confirmation/ok-with-remark.json

# Decide a refund on an order that has not shipped
curl -s -X POST $addr/v1/shops/tea-oil/refund-decision -H 'Authorization: Bearer $KEFU_KEY_TEA_OIL' -d @$req/refund-policy/unshipped.json

# Plan revisits after delivery at the apparel shop
curl -s -X POST $addr/v1/shops/apparel/revisit-plan -H 'Authorization: Bearer $KEFU_KEY_APPAREL' -d @$req/revisit-planner/delivered.json

# A buyer's message as a workflow event (the shop's flow greets them),
# then everything that happened to that buyer
grep -v '^#' $root/examples/events/tea-oil-buyer.jsonl | head -1 | curl -s -X POST $addr/v1/shops/tea-oil/events -H 'Authorization: Bearer $KEFU_KEY_TEA_OIL' -d @-
curl -s $addr/v1/shops/tea-oil/customers/tb_xiaowang/timeline -H 'Authorization: Bearer $KEFU_KEY_TEA_OIL'

# Read back: refunds, planned revisits, the decision log, active plugins
curl -s $addr/v1/shops/tea-oil/refunds -H 'Authorization: Bearer $KEFU_KEY_TEA_OIL'
curl -s $addr/v1/shops/apparel/revisits -H 'Authorization: Bearer $KEFU_KEY_APPAREL'
curl -s "$addr/v1/shops/tea-oil/decisions?step=greeting&limit=5" -H 'Authorization: Bearer $KEFU_KEY_TEA_OIL'
curl -s $addr/v1/plugins -H 'Authorization: Bearer $KEFU_ADMIN_TOKEN'
curl -s $addr/metrics

SAMPLES

exec "$kefu" serve --config examples/kefu.toml "$@"
