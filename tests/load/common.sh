# Shared by the load scripts (sourced, after plugins/setup.sh): wrk, and a
# `kefu serve` on "$work/kefu.toml" run by "$kefu".

# Install wrk (Debian) if missing.
need_wrk() {
    if ! command -v wrk >/dev/null 2>&1; then
        echo "==> installing wrk"
        apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
    fi
}

# Start the server and wait (up to 60 s) until it listens; sets pid and addr.
start_server() {
    "$kefu" serve --config "$work/kefu.toml" > "$work/out" 2> "$work/log" &
    pid=$!
    for _ in $(seq 1 600); do
        grep -q "kefu ready\|ready in" "$work/out" 2>/dev/null && break
        sleep 0.1
    done
    addr="$(grep -o 'http://[0-9.:]*' "$work/out")"
}

# "$work/kefu.toml": serve "$work/shops" on a free loopback port, data and
# cache in "$work"; each argument is one more top-level line (a table's
# keys dotted: `quotas.concurrent_calls = 1000`).
serve_config() {
    {
        printf 'listen = "127.0.0.1:0"\ndata_dir = "%s/data"\nshops_dir = "%s/shops"\ncache_dir = "%s/cache"\n' \
            "$work" "$work" "$work"
        if [ "$#" -gt 0 ]; then printf '%s\n' "$@"; fi
    } > "$work/kefu.toml"
}

# A tea-oil shop in "$work/shops" whose refund policy runs the example
# shop's config, its key "$KEFU_LOAD_KEY", and "$work/candidate.toml": the
# same config with a 15-day no-reason window; "$work/kefu.toml" serves it
# with the shop's quotas out of the way (one shop takes all the load: a
# stall of the VM's disk would otherwise hold its 8 concurrent calls and
# turn the rest of a run into fast refusals).
tea_oil_refund_shop() {
    local hash
    hash="$(printf %s "$KEFU_LOAD_KEY" | sha256sum | cut -d' ' -f1)"
    mkdir -p "$work/shops/tea-oil"
    cp examples/shops/tea-oil/config/refund-policy.toml "$work/shops/tea-oil/refund.toml"
    printf 'name = "tea-oil"\napi_key_sha256 = "%s"\n[steps.refund-policy]\nconfig = "refund.toml"\n' "$hash" \
        > "$work/shops/tea-oil/shop.toml"
    sed 's/no_reason_return_days = 7/no_reason_return_days = 15/' "$work/shops/tea-oil/refund.toml" > "$work/candidate.toml"
    serve_config "quotas.log_kib_per_window = 10000000" "quotas.concurrent_calls = 1000" \
        "quotas.cpu_ms_per_window = 100000000"
}

# SHOPS shops of the bundled plugins in "$work/shops" (shop-1 .. shop-N),
# each answering to "$KEFU_LOAD_KEY", and "$work/kefu.toml" serving them;
# with KEFU_LOAD_REUSE=STEP each shop's STEP reuses its instances.
many_shops() {
    local shops="$1" hash i
    hash="$(printf %s "$KEFU_LOAD_KEY" | sha256sum | cut -d' ' -f1)"
    mkdir -p "$work/shops"
    for i in $(seq 1 "$shops"); do
        mkdir -p "$work/shops/shop-$i"
        printf 'name = "shop %s"\napi_key_sha256 = "%s"\n' "$i" "$hash" > "$work/shops/shop-$i/shop.toml"
        if [ -n "${KEFU_LOAD_REUSE:-}" ]; then
            printf '[steps.%s]\ninstances = "reuse"\n' "$KEFU_LOAD_REUSE" >> "$work/shops/shop-$i/shop.toml"
        fi
    done
    serve_config
}

# One shop (shop-1, the default flow) answering to "$KEFU_LOAD_KEY" in
# "$work/shops", "$work/kefu.toml" serving it with its quotas out of the
# way, "$work/greeting.json" (a buyer's message as a greeting request) and
# "$work/event.json" (the same as a `message.received` event whose id and
# buyer are `__ID__`: tests/load/events.lua makes each new).
events_shop() {
    local hash
    hash="$(printf %s "$KEFU_LOAD_KEY" | sha256sum | cut -d' ' -f1)"
    mkdir -p "$work/shops/shop-1"
    printf 'name = "shop 1"\napi_key_sha256 = "%s"\n' "$hash" > "$work/shops/shop-1/shop.toml"
    serve_config "quotas.log_kib_per_window = 100000000" "quotas.cpu_ms_per_window = 100000000"
    python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
greeting = json.load(open("examples/requests/greeting/discount.json"))
json.dump(greeting, open(f"{work}/greeting.json", "w"), ensure_ascii=False)
greeting["customer"]["id"] = "__ID__"
event = {"id": "__ID__", "type": "message.received", "at": 1794967200, "data": greeting}
open(f"{work}/event.json", "w").write(json.dumps(event, ensure_ascii=False))
PY
}
