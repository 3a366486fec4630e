#!/usr/bin/env bash
# kefu beside its floors, in one run (#29): the greeting route over SHOPS
# shops at 1, 16 and 64 connections, answered by
#   kefu        `kefu serve`, the default greeting plugin in its sandbox;
#   floor+sled  tests/load/floor.rs: the same route, key check and answer
#               shape with the greeting rule compiled natively, each
#               decision logged in kefu's sled store through kefu's group
#               commit before the answer;
#   floor       the same without the log;
#   floor+sled+wasm  floor+sled with the bundled greeting plugin called in
#               kefu's runtime (an instance reused per shop) instead of
#               the native rule: kefu less its own request path.
# After 2 s of warm-up each, ROUNDS rounds, the four servers in a
# rotating order within each (the machine is noisy: compare within a
# round). Prints req/s, p50, p99 and
# the server's CPU per answer (user + system time of its process over the
# answers), then kefu's ratios to floor+sled and to floor, and what the
# sandbox and kefu's own path each cost (floor+sled+wasm against
# floor+sled, kefu against floor+sled+wasm), round by round.
#   bash tests/load/floors.sh [SHOPS] [SECONDS] [ROUNDS]   (defaults 1000 10 2)
# KEFU_LOAD_CONNS narrows the connection counts (e.g. KEFU_LOAD_CONNS=64);
# KEFU_BIN and KEFU_FLOOR_BIN run another build's kefu and floor.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$(pwd)"
shops="${1:-1000}"
secs="${2:-10}"
rounds="${3:-2}"
source plugins/setup.sh
source tests/load/common.sh
need_wrk
cargo build --release -p kefu --bin kefu --example floor >/dev/null 2>&1
kefu="${KEFU_BIN:-$CARGO_TARGET_DIR/release/kefu}"
floor_bin="${KEFU_FLOOR_BIN:-$CARGO_TARGET_DIR/release/examples/floor}"

work="$(mktemp -d)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
export KEFU_LOAD_KEY="load-test-key"
many_shops "$shops"

# Start the three servers; each one's pid and address by name.
declare -A pid_of addr_of
start_server
pid_of[kefu]=$pid; addr_of[kefu]=$addr; pids+=("$pid")
start_floor() { # name, extra args
    local name="$1"; shift
    "$floor_bin" "$shops" "$KEFU_LOAD_KEY" "$@" > "$work/$name.out" 2> "$work/$name.log" &
    pid_of[$name]=$!; pids+=("$!")
    for _ in $(seq 1 100); do
        grep -q listening "$work/$name.out" 2>/dev/null && break
        sleep 0.1
    done
    addr_of[$name]="$(grep -o 'http://[0-9.:]*' "$work/$name.out")"
}
start_floor floor+sled --durable "$work/floor-data"
start_floor floor
start_floor floor+sled+wasm --durable "$work/floor-wasm-data" --sandbox

# CPU time of a process so far, in clock ticks (utime + stime).
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz="$(getconf CLK_TCK)"

# One wrk run of a server: prints "req/s p50 p99 cpu_us_per_answer".
measure() { # name conns
    local name="$1" conns="$2" threads before after out requests
    threads=$(( conns < 2 ? 1 : 2 ))
    before="$(ticks "${pid_of[$name]}")"
    out="$(KEFU_SHOPS="$shops" KEFU_STEP=greeting KEFU_BODY="$root/examples/requests/greeting/discount.json" \
        wrk -t"$threads" -c"$conns" -d"${secs}s" --latency -s tests/load/post.lua "${addr_of[$name]}" 2>"$work/wrk.err")"
    after="$(ticks "${pid_of[$name]}")"
    if [ -s "$work/wrk.err" ]; then
        echo "$name answered other than 200:" >&2
        head -3 "$work/wrk.err" >&2
        exit 1
    fi
    requests="$(echo "$out" | awk '/requests in/ {print $1}')"
    echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}') \
$(echo "$out" | awk '$1=="50%" {print $2}') \
$(echo "$out" | awk '$1=="99%" {print $2}') \
$(( (after - before) * 1000000 / hz / requests ))"
}

# wrk's latency ("812.00us", "1.20ms", "2.01s") in microseconds.
us() { awk -v t="$1" 'BEGIN { n = t + 0; if (t ~ /us$/) print n; else if (t ~ /ms$/) print n * 1000; else print n * 1000000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

servers=(kefu floor+sled floor floor+sled+wasm)
# Warm each server up before measuring (2 s at 64 connections, not
# counted): kefu's first calls of each shop make its instances, and the
# first round would otherwise count them.
for name in "${servers[@]}"; do
    KEFU_SHOPS="$shops" KEFU_STEP=greeting KEFU_BODY="$root/examples/requests/greeting/discount.json" \
        wrk -t2 -c64 -d2s -s tests/load/post.lua "${addr_of[$name]}" >/dev/null 2>&1
done
printf '%-6s %5s  %-15s %10s %10s %10s %9s\n' round conns server "req/s" p50 p99 "cpu/answer"
summary=""
for round in $(seq 1 "$rounds"); do
    for conns in ${KEFU_LOAD_CONNS:-1 16 64}; do
        declare -A got=()
        # Rotate who goes first, round by round.
        shift_by=$(( (round - 1) % ${#servers[@]} ))
        order=("${servers[@]:$shift_by}" "${servers[@]:0:$shift_by}")
        for name in "${order[@]}"; do
            got[$name]="$(measure "$name" "$conns")"
            read -r rps p50 p99 cpu <<<"${got[$name]}"
            printf '%-6s %5s  %-15s %10s %10s %10s %7s µs\n' "$round" "$conns" "$name" "$rps" "$p50" "$p99" "$cpu"
        done
        read -r k_rps k_p50 k_p99 k_cpu <<<"${got[kefu]}"
        read -r s_rps s_p50 s_p99 s_cpu <<<"${got[floor+sled]}"
        read -r f_rps f_p50 f_p99 f_cpu <<<"${got[floor]}"
        read -r w_rps w_p50 w_p99 w_cpu <<<"${got[floor+sled+wasm]}"
        summary+="$(printf '%-6s %5s  %8s %8s %8s %8s   %8s %8s   %8s %8s   %8s %8s\\n' "$round" "$conns" \
            "$(ratio "$k_rps" "$s_rps")" "$(ratio "$(us "$k_p50")" "$(us "$s_p50")")" \
            "$(ratio "$(us "$k_p99")" "$(us "$s_p99")")" "$(ratio "$k_cpu" "$s_cpu")" \
            "$(ratio "$k_rps" "$f_rps")" "$(ratio "$(us "$k_p99")" "$(us "$f_p99")")" \
            "$(ratio "$w_rps" "$s_rps")" "$(ratio "$w_cpu" "$s_cpu")" \
            "$(ratio "$k_rps" "$w_rps")" "$(ratio "$k_cpu" "$w_cpu")")"
        unset got
    done
done
echo
echo "kefu / floor+sled: req/s, p50, p99, CPU per answer;   kefu / floor: req/s, p99;"
echo "the sandbox (floor+sled+wasm / floor+sled) and kefu's own path (kefu / floor+sled+wasm): req/s, CPU"
printf '%-6s %5s  %8s %8s %8s %8s   %8s %8s   %8s %8s   %8s %8s\n' round conns "req/s" p50 p99 cpu "req/s" p99 "sbx r/s" "sbx cpu" "own r/s" "own cpu"
printf '%b' "$summary"
