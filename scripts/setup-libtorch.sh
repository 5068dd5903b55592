#!/usr/bin/env bash
# Puts a CPU-usable libtorch 2.11.0 (what tch 0.24 expects) into .libtorch/ (git-ignored),
# taken from PyPI wheels instead of the 2.7 GB CUDA wheel set:
#   * torch 2.11.0 (cp311, manylinux_2_28 x86_64): headers, libtorch_cpu.so, libtorch.so,
#     libc10.so, libgomp.so.1;
#   * nvidia-cuda-runtime 13.0.96 and nvidia-cuda-cupti 13.0.85 (the versions torch's
#     cuda-toolkit==13.0.2 requirement pins): libcudart.so.13 and libcupti.so.13, which
#     libtorch_cpu.so lists as NEEDED even when no GPU is used.
# Every wheel is checked against the sha256 recorded below. Idempotent: does nothing when
# .libtorch/.complete records this exact set. Wheels are cached in .libtorch/wheels.
# Environment: DLM_LIBTORCH_DIR (instead of .libtorch), DLM_LIBTORCH_WHEELS (a wheel cache to
# share between checkouts, instead of .libtorch/wheels).
#
# Result:  .libtorch/include, .libtorch/lib, .libtorch/build-version
# Use:     export LIBTORCH=$PWD/.libtorch   (scripts/test-torch.sh does this)
# libtorch.so in the wheel needs libtorch_cuda.so (456 MB, plus cuDNN, NCCL, ...), which is
# not installed; it is replaced by a linker script that stands for libtorch_cpu.so, so
# `-ltorch` (emitted by torch-sys) links without pulling in CUDA. For GPUs, link against a full
# PyTorch 2.11.0 instead (LIBTORCH_USE_PYTORCH=1, see plugins/torch/README.md).
#
# Options: --force (re-extract), --prune-wheels (delete the cached wheels afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEST=${DLM_LIBTORCH_DIR:-$ROOT/.libtorch}
WHEELS=${DLM_LIBTORCH_WHEELS:-$DEST/wheels}

TORCH_VERSION=2.11.0
# file name | sha256 | pip requirement
SPECS=(
  "torch-2.11.0-cp311-cp311-manylinux_2_28_x86_64.whl|7aa2f9bbc6d4595ba72138026b2074be1233186150e9292865e04b7a63b8c67a|torch==2.11.0"
  "nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl|7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548|nvidia-cuda-runtime==13.0.96"
  "nvidia_cuda_cupti-13.0.85-py3-none-manylinux_2_25_x86_64.whl|4eb01c08e859bf924d222250d2e8f8b8ff6d3db4721288cf35d14252a4d933c8|nvidia-cuda-cupti==13.0.85"
)
# What libtorch_cpu.so, libc10.so and libgomp.so.1 need (readelf -d), besides glibc/libstdc++.
TORCH_LIBS=(libtorch_cpu.so libc10.so libgomp.so.1)
CUDA_LIBS=(libcudart.so.13 libcupti.so.13)

FORCE=0
PRUNE=0
for a in "$@"; do
  case "$a" in
    --force) FORCE=1 ;;
    --prune-wheels) PRUNE=1 ;;
    *) echo "setup-libtorch: unknown option '$a' (accepted: --force, --prune-wheels)" >&2; exit 2 ;;
  esac
done

stamp_text() {
  printf 'torch %s\n' "$TORCH_VERSION"
  for s in "${SPECS[@]}"; do printf '%s\n' "$s"; done
}

complete() {
  [ -f "$DEST/.complete" ] || return 1
  [ "$(cat "$DEST/.complete")" = "$(stamp_text)" ] || return 1
  for f in "${TORCH_LIBS[@]}" "${CUDA_LIBS[@]}" libtorch.so libgomp.so; do
    [ -e "$DEST/lib/$f" ] || return 1
  done
  [ -f "$DEST/include/torch/csrc/api/include/torch/torch.h" ] || return 1
}

if [ "$FORCE" -eq 0 ] && complete; then
  echo "setup-libtorch: $DEST is ready (libtorch $TORCH_VERSION)" >&2
  exit 0
fi

for tool in unzip sha256sum; do
  command -v "$tool" >/dev/null || { echo "setup-libtorch: '$tool' is required (apt-get install $tool)" >&2; exit 1; }
done
PIP=(python3 -m pip)
"${PIP[@]}" --version >/dev/null 2>&1 || { echo "setup-libtorch: python3 -m pip is required to download the wheels" >&2; exit 1; }

mkdir -p "$DEST" "$WHEELS"
verified() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

for s in "${SPECS[@]}"; do
  IFS='|' read -r file sum req <<<"$s"
  if verified "$WHEELS/$file" "$sum"; then continue; fi
  rm -f "$WHEELS/$file"
  echo "setup-libtorch: downloading $req" >&2
  # The wheels hold only C/C++ libraries for our purposes: pin the tags so the same file
  # (and sha256) is chosen on any host Python.
  "${PIP[@]}" download --quiet --no-deps --only-binary=:all: \
    --python-version 3.11 --implementation cp --abi cp311 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_25_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 \
    -d "$WHEELS" "$req"
  if ! verified "$WHEELS/$file" "$sum"; then
    echo "setup-libtorch: $WHEELS/$file is missing or its sha256 is not $sum;" \
         "the index served another file. Delete $WHEELS and retry, or update SPECS in $0" >&2
    exit 1
  fi
done

echo "setup-libtorch: extracting into $DEST" >&2
TMP=$(mktemp -d "$DEST/.extract.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
torch_whl=$WHEELS/$(cut -d'|' -f1 <<<"${SPECS[0]}")
unzip -q -o "$torch_whl" 'torch/include/*' -d "$TMP"
for f in "${TORCH_LIBS[@]}"; do unzip -q -o "$torch_whl" "torch/lib/$f" -d "$TMP"; done
for s in "${SPECS[@]:1}"; do
  file=$(cut -d'|' -f1 <<<"$s")
  for f in "${CUDA_LIBS[@]}"; do
    unzip -q -o "$WHEELS/$file" "nvidia/cu13/lib/$f" -d "$TMP" 2>/dev/null || true
  done
done
mkdir -p "$TMP/torch/lib"
for f in "${CUDA_LIBS[@]}"; do
  [ -f "$TMP/nvidia/cu13/lib/$f" ] || { echo "setup-libtorch: $f not found in the CUDA wheels" >&2; exit 1; }
  mv "$TMP/nvidia/cu13/lib/$f" "$TMP/torch/lib/$f"
done
# `-ltorch` and `-lgomp` (emitted by torch-sys) must find these in the lib dir; see header.
cat >"$TMP/torch/lib/libtorch.so" <<'EOF'
/* dlm: CPU-only stand-in for libtorch.so (the real one needs libtorch_cuda.so). */
INPUT(libtorch_cpu.so)
EOF
ln -sf libgomp.so.1 "$TMP/torch/lib/libgomp.so"
printf '%s\n' "$TORCH_VERSION" >"$TMP/torch/build-version"

rm -rf "$DEST/include" "$DEST/lib" "$DEST/build-version" "$DEST/.complete"
mv "$TMP/torch/include" "$TMP/torch/lib" "$TMP/torch/build-version" "$DEST/"
stamp_text >"$DEST/.complete"
if [ "$PRUNE" -eq 1 ]; then rm -rf "$WHEELS"; fi
echo "setup-libtorch: done ($(du -sh "$DEST/lib" | cut -f1) of libraries in $DEST/lib)" >&2
