#!/usr/bin/env bash
# Performance figures for docs/results.md: solver benches, the comparison with scipy and the
# lapjv package, seconds per epoch of sort training at the authors' configuration, and the
# epoch / solver-floor cost model (bench/epoch_floor.py: the trend in d and draws, the k-NN
# step against its GEMM floor, the shortest-path SPO+ epoch; BEFORE=path/to/older/dlm adds a
# before/after comparison measured in the same run). Writes docs/perf-*.json and
# docs/perf-trend.svg. Needs a release build (cargo build --release -p dlm-cli) and, for the
# comparison, `pip install scipy lapjv numpy`.
set -euo pipefail
cd "$(dirname "$0")/.."
DLM=${DLM:-target/release/dlm}
"$DLM" bench matching --n 5,10,50,100,200 --thread-counts 1,2 --seconds 1 --json > docs/perf-matching.json
"$DLM" bench topk --m 100,800,10000 --k 9 --thread-counts 1,2 --seconds 1 --json > docs/perf-topk.json
python3 bench/compare_lap.py --dlm "$DLM" --json-out docs/perf-compare-lap.json
# Sort training, batch 10, 5 draws, 2000 epochs without early stopping, 3 seeds per d.
echo '[' > docs/perf-sort-epoch.json
first=1
for n in 5 10 15; do
  for seed in 1 2 3; do
    out=$("$DLM" train --task sort --n "$n" --seed "$seed" --epochs 2000 --patience 0 --json --quiet)
    [ $first -eq 1 ] || echo ',' >> docs/perf-sort-epoch.json
    first=0
    python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(json.dumps({k: d[k] for k in ['n','seed','epochs_run','seconds_per_epoch','train_seconds']}))" "$out" >> docs/perf-sort-epoch.json
  done
done
echo ']' >> docs/perf-sort-epoch.json
python3 - <<'PY'
import json, statistics
rows = json.load(open("docs/perf-sort-epoch.json"))
for n in (5, 10, 15):
    s = [r["seconds_per_epoch"] for r in rows if r["n"] == n]
    print(f"sort d={n}: median {statistics.median(s)*1e6:.0f} us/epoch over {len(s)} runs of 2000 epochs")
PY
python3 bench/epoch_floor.py --rounds 3 ${BEFORE:+--before "$BEFORE"} --dlm "$DLM"
python3 bench/results_tables.py
