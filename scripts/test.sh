#!/usr/bin/env bash
# Runs every test of the workspace (unit, property, plugin-loading, CLI end-to-end).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --all-targets "$@"
cargo test --workspace --doc
# The libtorch scorer plugin lives outside the main workspace (the dlm binary never links
# libtorch); this fetches libtorch 2.11.0's CPU libraries from PyPI and runs its tests.
scripts/test-torch.sh
