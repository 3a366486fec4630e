#!/usr/bin/env bash
# kefu on NATS beside kefu on sled, in one run (#26): the greeting route
# over SHOPS shops at 64 connections, ROUNDS rounds alternating
#   sled     one `kefu serve` on sled (the embedded default);
#   nats-1   one node on NATS (a nats-server on loopback, every write
#            fsynced before it is acknowledged);
#   nats-3   three nodes on that NATS, each loaded by its own wrk at once
#            (a third of the connections each): per node and aggregate.
# Each answer appends one decision, so req/s is decision-log appends/s.
# Then DEPLOYS config deploys of shop-1's greeting through node 1, timing
# how long until nodes 2 and 3 answer with the new version (p50, max).
# One machine with 2 cores cannot show scaling: the three nodes and NATS
# share it.
#   bash tests/load/cluster.sh [SHOPS] [SECONDS] [ROUNDS] [DEPLOYS]   (defaults 100 10 2 10)
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$(pwd)"
shops="${1:-100}"
secs="${2:-10}"
rounds="${3:-2}"
deploys="${4:-10}"
source plugins/setup.sh
source tests/load/common.sh
kefu_setup_nats
need_wrk
cargo build --release -p kefu --bin kefu >/dev/null 2>&1
kefu="${KEFU_BIN:-$CARGO_TARGET_DIR/release/kefu}"

work="$(mktemp -d)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
export KEFU_LOAD_KEY="load-test-key"
export KEFU_ADMIN_TOKEN="load-admin-token"
many_shops "$shops"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
mkdir -p "$work/nats"
printf 'listen: 127.0.0.1:%s\njetstream {\n  store_dir: "%s"\n  sync_interval: always\n}\n' "$port" "$work/nats/js" > "$work/nats/nats.conf"
"$KEFU_NATS_SERVER" -c "$work/nats/nats.conf" > "$work/nats/log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done

# Start a server on "$work/<name>.toml"; sets pid and addr.
serve() { # name, [extra toml]
    local name="$1"
    sed "s|$work/data|$work/$name-data|" "$work/kefu.toml" > "$work/$name.toml"
    printf '%s\n' "${2:-}" >> "$work/$name.toml"
    "$kefu" serve --config "$work/$name.toml" > "$work/$name.out" 2> "$work/$name.log" &
    pid=$!; pids+=("$pid")
    for _ in $(seq 1 1200); do
        grep -q "kefu ready\|ready in" "$work/$name.out" 2>/dev/null && break
        sleep 0.1
    done
    addr="$(grep -o 'http://[0-9.:]*' "$work/$name.out")"
    [ -n "$addr" ] || { echo "$name did not start:" >&2; tail -5 "$work/$name.log" >&2; exit 1; }
}
nats_toml() { printf '[storage]\nbackend = "nats"\nurl = "nats://127.0.0.1:%s"\nnode = "%s"\n' "$port" "$1"; }

declare -A addr_of
serve sled; addr_of[sled]=$addr
for n in 1 2 3; do serve "nats-$n" "$(nats_toml "node-$n")"; addr_of[nats-$n]=$addr; done

# One wrk run: "req/s p50 p99".
run_wrk() { # addr conns
    KEFU_SHOPS="$shops" KEFU_STEP=greeting KEFU_BODY="$root/examples/requests/greeting/discount.json" \
        wrk -t2 -c"$2" -d"${secs}s" --latency -s tests/load/post.lua "$1" 2>>"$work/wrk.err" \
        | awk '/Requests\/sec/ {r=$2} $1=="50%" {p50=$2} $1=="99%" {p99=$2} END {print r, p50, p99}'
}

printf '%-6s %-8s %10s %10s %10s\n' round setup "req/s" p50 p99
summary=""
for round in $(seq 1 "$rounds"); do
    read -r s_rps s_p50 s_p99 <<<"$(run_wrk "${addr_of[sled]}" 64)"
    printf '%-6s %-8s %10s %10s %10s\n' "$round" sled "$s_rps" "$s_p50" "$s_p99"
    read -r n_rps n_p50 n_p99 <<<"$(run_wrk "${addr_of[nats-1]}" 64)"
    printf '%-6s %-8s %10s %10s %10s\n' "$round" nats-1 "$n_rps" "$n_p50" "$n_p99"
    for n in 1 2 3; do run_wrk "${addr_of[nats-$n]}" 22 > "$work/three-$n" & done
    wait "$(jobs -p | tail -1)" 2>/dev/null || true
    sleep 1
    total=0
    for n in 1 2 3; do
        while [ ! -s "$work/three-$n" ]; do sleep 0.2; done
        read -r t_rps t_p50 t_p99 < "$work/three-$n"
        printf '%-6s %-8s %10s %10s %10s\n' "$round" "node-$n/3" "$t_rps" "$t_p50" "$t_p99"
        total="$(awk -v a="$total" -v b="$t_rps" 'BEGIN {print a + b}')"
        rm -f "$work/three-$n"
    done
    summary+="$(printf '%-6s %10.2f %10.2f\\n' "$round" \
        "$(awk -v a="$n_rps" -v b="$s_rps" 'BEGIN {print a / b}')" \
        "$(awk -v a="$total" -v b="$s_rps" 'BEGIN {print a / b}')")"
    printf '%-6s %-8s %10.0f\n' "$round" "nats-3" "$total"
done
if grep -q . "$work/wrk.err" 2>/dev/null; then
    echo "answers other than 200:" >&2; sort "$work/wrk.err" | uniq -c | head -5 >&2
fi
echo
echo "req/s against sled in the same round: one NATS node, three NATS nodes together"
printf '%-6s %10s %10s\n' round nats-1 nats-3
printf '%b' "$summary"

# Deploy propagation: a config deploy through node 1, then nodes 2 and 3
# asked (a greeting call each, over kept connections) until both answer
# with its version.
python3 - "${addr_of[nats-1]}" "${addr_of[nats-2]}" "${addr_of[nats-3]}" "$deploys" \
    "$root/examples/requests/greeting/discount.json" <<'PY'
import http.client, json, sys, time, urllib.parse, uuid
one, two, three, deploys, body = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), open(sys.argv[5], "rb").read()
def conn(url):
    u = urllib.parse.urlparse(url)
    return http.client.HTTPConnection(u.hostname, u.port)
def version(c):
    c.request("POST", "/v1/shops/shop-1/greeting", body, {"Authorization": "Bearer load-test-key"})
    return json.loads(c.getresponse().read())["plugin"]["version"]
deployer, others = conn(one), [conn(two), conn(three)]
times = []
for i in range(deploys):
    boundary = uuid.uuid4().hex
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"config\"; filename=\"greeting.toml\"\r\n"
            f"Content-Type: application/toml\r\n\r\nagent_name = \"agent {i} {boundary[:6]}\"\r\n--{boundary}--\r\n").encode()
    deployer.request("POST", "/v1/shops/shop-1/steps/greeting/versions", form,
                     {"Authorization": "Bearer load-admin-token",
                      "Content-Type": f"multipart/form-data; boundary={boundary}"})
    v = json.loads(deployer.getresponse().read())["version"]["version"]
    start = time.monotonic()
    for c in others:
        while version(c) != v:
            if time.monotonic() - start > 30:
                sys.exit(f"version {v} not served within 30 s")
            time.sleep(0.001)
    times.append((time.monotonic() - start) * 1000)
times.sort()
print(f"\ndeploy through node 1 until nodes 2 and 3 serve it ({deploys} deploys): "
      f"p50 {times[(deploys - 1) // 2]:.0f} ms, max {times[-1]:.0f} ms")
PY
