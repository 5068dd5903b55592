#!/usr/bin/env bash
# A long fuzz run of every parser of untrusted input (tests/tests/fuzz.rs): CSV and .npy
# arrays, IDX and CIFAR-10 files, model files, mlp weights, structured .npz data, component
# specs. The default test suite runs a few hundred seeded cases per parser; this runs
# CASES per parser (default 100000) in a release build, with SEED (default 1) choosing other
# inputs than the default suite's. A failure prints the (shrunk) input that broke a property:
# a panic, a call over its time limit, or a peak of memory above the bound for its size.
#
#   scripts/fuzz.sh [CASES] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
export DLM_FUZZ_CASES="${1:-100000}"
export DLM_FUZZ_SEED="${2:-1}"
cargo test --release -p dlm-tests --test fuzz -- --test-threads 2
