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
        grep -q "listening" "$work/out" 2>/dev/null && break
        sleep 0.1
    done
    addr="$(grep -o 'http://[0-9.:]*' "$work/out")"
}
