#!/usr/bin/env bash
# One command: set everything up and run all tests.
#   bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source plugins/setup.sh
kefu_build_polyglot
kefu_setup_test_tools

echo "==> host: unit and integration tests (builds every guest plugin once)"
cargo test --release --workspace

echo "==> plugins: unit tests of the default plugins' rules (native)"
(cd plugins && cargo test --target-dir "$CARGO_TARGET_DIR/plugins-native")
