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

# The commands leave the clone as it was: nothing tracked changed, nothing
# new left untracked (builds and installs go to ignored paths or ~/.cache).
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    changed="$(git status --porcelain)"
    if [ -n "$changed" ]; then
        echo "the test command changed the clone:" >&2
        echo "$changed" >&2
        exit 1
    fi
fi
