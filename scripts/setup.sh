#!/usr/bin/env bash
# Installs what dlm needs on a fresh Debian machine (as root): OpenBLAS/LAPACK for the
# correlated-Gaussian noise (ndarray-linalg, openblas-system backend). Idempotent.
set -euo pipefail
need=()
for pkg in libopenblas-dev gfortran pkg-config; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
