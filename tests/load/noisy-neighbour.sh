#!/usr/bin/env bash
# The noisy-neighbour measurement, repeated: PAIRS alternating runs of
# shop A beside shop B on one server, and of the control with shop A on a
# server of its own. Prints B's unloaded and loaded p99 and their ratio
# per run, then how many runs of each kind stayed within 2x.
#   bash tests/load/noisy-neighbour.sh [PAIRS]   (default 10, ~20 s a pair)
set -euo pipefail
cd "$(dirname "$0")/../.."
source plugins/setup.sh
pairs="${1:-10}"
cargo test --release -p kefu --test isolation --no-run >/dev/null 2>&1
declare -A within=([beside]=0 [apart]=0)
run() {
    local test="$1" out line u l
    # A run over 2x fails its test; the figures are printed either way.
    out="$(cargo test --release -p kefu --test isolation "$test" -- --ignored --nocapture 2>&1)" || true
    line="$(grep 'shop B greeting p99' <<<"$out")" || { echo "$out" >&2; echo "run failed: $test" >&2; exit 1; }
    u="$(sed -E 's/.*unloaded ([0-9.]+) ms.*/\1/' <<<"$line")"
    l="$(sed -E 's/.*loops ([0-9.]+) ms.*/\1/' <<<"$line")"
    awk -v u="$u" -v l="$l" 'BEGIN { printf "%.2f -> %.2f ms (%.2fx)", u, l, l / u; exit !(l <= 2 * u) }'
}
for i in $(seq 1 "$pairs"); do
    printf 'pair %2d  beside: ' "$i"
    if run noisy_neighbour_p99_stays_within_twice; then within[beside]=$((within[beside] + 1)); fi
    printf '   own server: '
    if run noisy_neighbour_control_with_shop_a_on_its_own; then within[apart]=$((within[apart] + 1)); fi
    echo
done
echo "within 2x: beside ${within[beside]} of $pairs, on its own server ${within[apart]} of $pairs"
