#!/usr/bin/env bash
# The main job on the embedded default: learn to sort 10 numbers by bipartite matching with a
# learned noise scale (seed experiment 1), then print the test metrics as JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p dlm-cli
exec target/release/dlm train --task sort --n 10 --seed 1 --json "$@"
