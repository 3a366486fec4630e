#!/usr/bin/env bash
# One command: set everything up and run all tests.
#   bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# What the clone looks like before (a developer's own edits included).
before="$(git status --porcelain 2>/dev/null || true)"
source plugins/setup.sh
kefu_build_polyglot
kefu_setup_test_tools

# The tests' shared compile cache keeps what they used in the last two
# days; kefu touches an artifact each time it loads one.
find "$CARGO_TARGET_DIR/tmp/kefu-cache" -name '*.cwasm' -mtime +2 -delete 2>/dev/null || true

echo "==> host: unit and integration tests (builds every guest plugin once)"
cargo test --release --workspace

echo "==> one build: the server build reuses the tests' build (nothing to compile)"
rebuilt="$(cargo build --release -p kefu --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and not m["fresh"]:
        print(m["target"]["name"])
')"
if [ -n "$rebuilt" ]; then
    echo "cargo build -p kefu rebuilt what cargo test had built (features differ):" >&2
    echo "$rebuilt" >&2
    exit 1
fi

echo "==> plugins: unit tests of the default plugins' rules (native)"
(cd plugins && cargo test --target-dir "$CARGO_TARGET_DIR/plugins-native")

# The commands leave the clone as it was: nothing tracked changed, nothing
# new left untracked (builds and installs go to ignored paths or ~/.cache).
after="$(git status --porcelain 2>/dev/null || true)"
if [ "$before" != "$after" ]; then
    echo "the test command changed the clone (git status before and after):" >&2
    diff <(echo "$before") <(echo "$after") >&2 || true
    exit 1
fi
