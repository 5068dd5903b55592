#!/usr/bin/env bash
# Runs every test of the workspace (unit, property, plugin-loading, CLI end-to-end).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --all-targets "$@"
cargo test --workspace --doc
