#!/usr/bin/env bash
# Runs every test of the workspace (unit, property, plugin-loading, CLI end-to-end).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --all-targets "$@"
cargo test --workspace --doc
# The core and the test kit are the crates plugin authors depend on: they must stay packageable
# (no file from outside the crate, every dependency versioned); cargo verifies each package by
# building it from its .crate file.
cargo package -p dlm-core -p dlm-testkit --allow-dirty --quiet
# The libtorch scorer plugin lives outside the main workspace (the dlm binary never links
# libtorch); this fetches libtorch 2.11.0's CPU libraries from PyPI and runs its tests.
scripts/test-torch.sh
