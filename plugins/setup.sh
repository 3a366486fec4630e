#!/usr/bin/env bash
# Sets up what building kefu and its plugins needs, idempotently. Sourced
# by examples/run.sh and tests/run.sh; safe to run on its own.
#
# - CARGO_TARGET_DIR defaults to ~/.cache/kefu/target, outside the clone,
#   so every clone on a machine shares one build of wasmtime.
# - installs the wasm32-wasip2 Rust target.
set -euo pipefail

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kefu/target}"
export KEFU_GUEST_TARGET_DIR="${KEFU_GUEST_TARGET_DIR:-$CARGO_TARGET_DIR/wasm-guests}"

if ! command -v cargo >/dev/null 2>&1; then
    echo "kefu needs Rust (cargo) from rustup: https://rustup.rs" >&2
    exit 1
fi
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "==> installing the wasm32-wasip2 Rust target"
    rustup target add wasm32-wasip2
fi

# Build the default plugins (components) into $KEFU_GUEST_TARGET_DIR/plugins.
kefu_build_plugins() {
    local root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    echo "==> building the default plugins"
    (cd "$root/plugins" && cargo build --release --target wasm32-wasip2 \
        --target-dir "$KEFU_GUEST_TARGET_DIR/plugins")
    KEFU_PLUGIN_DIR="$KEFU_GUEST_TARGET_DIR/plugins/wasm32-wasip2/release"
    export KEFU_PLUGIN_DIR
}
