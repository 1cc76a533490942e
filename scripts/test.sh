#!/usr/bin/env bash
# The whole test suite: installs what the tests need, checks formatting and
# lints, runs every test (unit, component, end-to-end) as root with unmet
# requirements failing (WHARF_TEST_STRICT=1), then sweeps for leaks.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --test
if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install cargo-nextest --locked
fi
export WHARF_TEST_STRICT=1
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo nextest run --workspace --locked --no-fail-fast
scripts/leak-sweep.sh
