#!/usr/bin/env bash
# Builds and tests the libtorch scorer plugin (plugins/torch, outside the main workspace) on the
# CPU: fetches libtorch 2.11.0 into .libtorch/ (scripts/setup-libtorch.sh), then runs its tests
# and clippy with the main target directory, so the plugin lands in target/<profile>/.
# Extra arguments go to `cargo test` (e.g. --release). Set DLM_TORCH_SKIP_CLIPPY=1 to skip clippy.
# Last, `scripts/gpu-knn.sh --dry-run` checks the GPU k-NN protocol on the CPU.
# With LIBTORCH_USE_PYTORCH=1 in the environment the local libtorch is not fetched and the
# active python's PyTorch 2.11.0 is used instead (GPU hosts, see plugins/torch/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
if [ -z "${LIBTORCH_USE_PYTORCH:-}" ] && [ -z "${LIBTORCH:-}" ]; then
  scripts/setup-libtorch.sh
  export LIBTORCH="${DLM_LIBTORCH_DIR:-$ROOT/.libtorch}"
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
MANIFEST=plugins/torch/Cargo.toml
cargo test --manifest-path "$MANIFEST" "$@"
if [ -z "${DLM_TORCH_SKIP_CLIPPY:-}" ]; then
  cargo clippy --manifest-path "$MANIFEST" --all-targets -- -D warnings
fi
# The GPU k-NN protocol, validated on the CPU: tiny synthetic data in the real formats, the same
# three runs (LeNet on MNIST, ResNet-18 on Fashion-MNIST and CIFAR-10) with a 2-second budget.
dry_out=$(mktemp -d)
scripts/gpu-knn.sh --dry-run --out "$dry_out"
rm -rf "$dry_out"
