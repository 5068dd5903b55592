#!/usr/bin/env bash
# The seed's k-NN experiments (experiment 2) on a GPU, unattended, one JSON per run.
#
#   scripts/gpu-knn.sh [--dry-run] [--budget SECONDS] [--out DIR] [--only LIST] [--no-build]
#
# Real run (a machine with a CUDA build of PyTorch 2.11.0, what tch 0.24 wants):
#   1. checks that python3's torch is 2.11.0 and sees a GPU (else it stops and says so);
#   2. builds `dlm` (release, without OpenBLAS, which only correlated Gaussian noise uses) and the torch
#      plugin against that PyTorch (LIBTORCH_USE_PYTORCH=1, as plugins/torch/README.md says);
#   3. runs, each with the seed's settings (docs/theory.md section 5) and --time-budget:
#        mnist          torch-lenet mu, torch-sigma-mnist sigma (SGD 1e-5), eps -0.1
#        fashion-mnist  torch-resnet18 mu (input 1x28x28), torch-sigma-mnist sigma (SGD 1e-5), eps -0.1
#        cifar10        torch-resnet18 mu, torch-sigma-cifar sigma (SGD 1e-6), eps -0.2,
#                       600 candidates; only when <data>/cifar-10-batches-bin/ holds its files
#      100 queries, 800 candidates (600 for CIFAR-10), 1 draw, k = 5, learned sigma, test
#      accuracy for k = 1, 3, 5, 9 and an accuracy trace after every epoch (1000 test images).
#   Data come from $DLM_DATA_DIR (else <repo>/.data); scripts/fetch-data.sh fills it where a
#   package registry is reachable (a GPU host that cannot reach one needs the files copied in).
#   Writes DIR/<data>.json (the `dlm train --json` result), DIR/<data>.log (its progress) and
#   DIR/summary.json (date, device, versions, budget, each run's accuracies), DIR defaulting to
#   $OUT if set, else gpu-knn-results/ (git-ignored).
#
# --dry-run validates all of this on the CPU, quickly: it builds against the CPU libtorch of
#   scripts/setup-libtorch.sh (debug profile, as the test suite does), writes tiny synthetic
#   MNIST / Fashion-MNIST (IDX, raw and gzip) and CIFAR-10 (binary batches) files into a
#   temporary data directory, and runs the same three commands on the CPU with a 2-second
#   budget, 20 queries, 60 candidates and a ResNet-18 of width 4 (the same code paths, a
#   fraction of the work), then checks every JSON. No GPU, no network (beyond libtorch's
#   first download).
# --budget SECONDS   training time per run (default 1800; dry run 2)
# --only LIST        a comma-separated subset of mnist,fashion-mnist,cifar10
# --no-build         use the binaries already in target/<profile>/ (DLM_BIN, DLM_TORCH_PLUGIN
#                    override their paths)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

die() { echo "gpu-knn: error: $*" >&2; exit 1; }
log() { echo "gpu-knn: $*" >&2; }

dry=0 budget="" out="${OUT:-}" only="mnist,fashion-mnist,cifar10" build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --budget) [ $# -ge 2 ] || die "--budget needs a number of seconds"; budget="$2"; shift ;;
    --out) [ $# -ge 2 ] || die "--out needs a directory"; out="$2"; shift ;;
    --only) [ $# -ge 2 ] || die "--only needs a list, e.g. mnist,cifar10"; only="$2"; shift ;;
    --no-build) build=0 ;;
    -h|--help) sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
  esac
  shift
done
for d in ${only//,/ }; do
  case "$d" in mnist|fashion-mnist|cifar10) ;; *) die "--only: unknown data set '$d' (mnist, fashion-mnist, cifar10)" ;; esac
done
if [ -z "$budget" ]; then budget=$([ $dry = 1 ] && echo 2 || echo 1800); fi
[[ "$budget" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--budget: '$budget' is not a number of seconds"
[ -n "$out" ] || out="$ROOT/gpu-knn-results"
mkdir -p "$out"
command -v python3 >/dev/null || die "python3 is needed (to check PyTorch and read the results)"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ $dry = 1 ]; then
  profile="${DLM_GPU_KNN_PROFILE:-debug}"
  device=cpu
else
  profile="${DLM_GPU_KNN_PROFILE:-release}"
  device=cuda
  tv=$(python3 -c 'import torch; print(torch.__version__, torch.cuda.is_available())' 2>/dev/null) ||
    die "python3 cannot import torch; install PyTorch 2.11.0 with CUDA (or use --dry-run on a CPU machine)"
  case "$tv" in
    "2.11.0"*" True") ;;
    *" False") die "PyTorch ($tv) sees no GPU; this script is for a GPU host (use --dry-run to check it on a CPU)" ;;
    *) die "PyTorch is ${tv% *}, the torch plugin (tch 0.24) needs 2.11.0" ;;
  esac
fi
bin_dir="$CARGO_TARGET_DIR/$profile"
cargo_profile=$([ "$profile" = debug ] && echo "" || echo "--profile $profile")

if [ $build = 1 ]; then
  if [ $dry = 1 ]; then
    [ -n "${LIBTORCH:-}${LIBTORCH_USE_PYTORCH:-}" ] || { scripts/setup-libtorch.sh; export LIBTORCH="${DLM_LIBTORCH_DIR:-$ROOT/.libtorch}"; }
  else
    export LIBTORCH_USE_PYTORCH=1
  fi
  log "building dlm and the torch plugin ($profile)"
  # The dry run keeps the test suite's default features (no rebuild); a GPU host may lack
  # OpenBLAS, which only the correlated Gaussian noise model uses.
  features=$([ $dry = 1 ] && echo "" || echo "--no-default-features")
  # shellcheck disable=SC2086
  cargo build $cargo_profile -p dlm-cli $features --quiet
  # shellcheck disable=SC2086
  cargo build $cargo_profile --manifest-path plugins/torch/Cargo.toml --quiet
fi
dlm="${DLM_BIN:-$bin_dir/dlm}"
plugin="${DLM_TORCH_PLUGIN:-$bin_dir/libdlm_plugin_torch.so}"
[ -x "$dlm" ] || die "$dlm is missing (build it, or drop --no-build)"
[ -f "$plugin" ] || die "$plugin is missing (build plugins/torch, or drop --no-build)"

tmp=""
cleanup() { [ -z "$tmp" ] || rm -rf "$tmp"; }
trap cleanup EXIT
if [ $dry = 1 ]; then
  tmp=$(mktemp -d)
  export DLM_DATA_DIR="$tmp/data"
  # Tiny data in the real formats: class c images are noise plus a bright band at row 2c.
  python3 - "$DLM_DATA_DIR" <<'EOF'
import gzip, os, random, struct, sys
root = sys.argv[1]
rng = random.Random(0)
def image(c, n):
    return bytes(min(255, rng.randrange(64) + (200 if (i // 28) // 2 == c else 0)) for i in range(n))
def idx(dir_, gz, n_train, n_test):
    os.makedirs(dir_, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = [i % 10 for i in range(n)]
        imgs = struct.pack(">IIII", 2051, n, 28, 28) + b"".join(image(c, 784) for c in labels)
        labs = struct.pack(">II", 2049, n) + bytes(labels)
        for name, data in ((f"{split}-images-idx3-ubyte", imgs), (f"{split}-labels-idx1-ubyte", labs)):
            path = os.path.join(dir_, name + (".gz" if gz else ""))
            with (gzip.open if gz else open)(path, "wb") as f:
                f.write(data)
idx(os.path.join(root, "mnist"), False, 300, 100)
idx(os.path.join(root, "fashion-mnist"), True, 300, 100)
cifar = os.path.join(root, "cifar-10-batches-bin")
os.makedirs(cifar, exist_ok=True)
for name, n in [(f"data_batch_{i}.bin", 60) for i in range(1, 6)] + [("test_batch.bin", 100)]:
    with open(os.path.join(cifar, name), "wb") as f:
        for i in range(n):
            f.write(bytes([i % 10]) + image(i % 10, 3072))
EOF
fi
data_dir="${DLM_DATA_DIR:-$ROOT/.data}"

# run NAME ARGS...: one training run; its JSON to $out/NAME.json (written whole or not at all).
run() {
  local name="$1"; shift
  log "$name: dlm $*"
  if "$dlm" --plugin "$plugin" train --task knn --data "$name" "$@" --time-budget "$budget" \
       --eval-every 1 --eval-k 1,3,5,9 --json > "$out/$name.json.tmp" 2> "$out/$name.log"; then
    mv "$out/$name.json.tmp" "$out/$name.json"
  else
    rm -f "$out/$name.json.tmp"
    tail -n 5 "$out/$name.log" >&2
    die "$name failed (log: $out/$name.log)"
  fi
}

if [ $dry = 1 ]; then
  small=(--queries 20 --candidates 60)
  cifar_size=("${small[@]}")
  narrow="width=4,"
else
  small=()
  cifar_size=(--candidates 600)
  narrow=""
fi
ran=()
for d in ${only//,/ }; do
  case "$d" in
    mnist)
      run mnist --mu "torch-lenet:device=$device" \
        --sigma-net "torch-sigma-mnist:device=$device,opt=sgd,lr=1e-5" --epsilon -0.1 ${small[@]+"${small[@]}"} ;;
    fashion-mnist)
      run fashion-mnist --mu "torch-resnet18:${narrow}input=1x28x28,device=$device" \
        --sigma-net "torch-sigma-mnist:device=$device,opt=sgd,lr=1e-5" --epsilon -0.1 ${small[@]+"${small[@]}"} ;;
    cifar10)
      if [ ! -f "$data_dir/cifar-10-batches-bin/test_batch.bin" ]; then
        log "cifar10: skipped ($data_dir/cifar-10-batches-bin/ is not there; no registry ships it)"
        continue
      fi
      run cifar10 --mu "torch-resnet18:${narrow}input=3x32x32,device=$device" \
        --sigma-net "torch-sigma-cifar:device=$device,opt=sgd,lr=1e-6" --epsilon -0.2 \
        "${cifar_size[@]}" ;;
  esac
  ran+=("$d")
done

gpu=$( (command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1) || echo "none")
python3 - "$out" "$dry" "$budget" "$gpu" "${ran[@]}" <<'EOF'
import json, os, sys, time
out, dry, budget, gpu, names = sys.argv[1], sys.argv[2] == "1", float(sys.argv[3]), sys.argv[4], sys.argv[5:]
runs = {}
for n in names:
    d = json.load(open(os.path.join(out, n + ".json")))
    acc = d["test"]["accuracy"]
    assert sorted(acc, key=int) == ["1", "3", "5", "9"], f"{n}: accuracy for k = {sorted(acc)}"
    assert all(0.0 <= a <= 1.0 for a in acc.values()), f"{n}: accuracy out of range"
    assert d.get("test_accuracy_trace") or d["epochs_run"] == 0, f"{n}: no accuracy trace"
    assert d["train_seconds"] < budget + 600, f"{n}: {d['train_seconds']} s against a {budget} s budget"
    runs[n] = {"mu": d["mu"], "epochs_run": d["epochs_run"], "stopped_by": d["stopped_by"],
               "train_seconds": d["train_seconds"], "accuracy": acc,
               "pixel_knn_accuracy": d["test"]["pixel_knn_accuracy"]}
summary = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "dry_run": dry,
           "device": "cpu (dry run)" if dry else gpu, "budget_seconds": budget, "runs": runs}
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=1)
for n, r in runs.items():
    best = max(r["accuracy"].values())
    print(f"gpu-knn: {n}: {r['epochs_run']} epochs in {r['train_seconds']:.0f} s, best-k accuracy {100*best:.2f} %",
          file=sys.stderr)
EOF
log "done: $out/summary.json"
