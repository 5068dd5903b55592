#!/usr/bin/env python3
"""The estimators x tasks table of docs/results.md (issue 11, item 5).

Every gradient estimator of `dlm` on every task, with the same solver, network, seeds and
epochs per task, from one run of this script on one machine:

* sort d = 10, 25, 50, 100 (matching, Hamming loss, the default mu MLP), metric:
  fraction of test sequences with any wrong position (lower is better), 1000 test sequences;
* shortest path, PyEPO's generator, deg 1, 2, 4, 6 (grid-edges, regret loss, a linear model),
  metric: normalized regret on 1000 test instances (lower is better);
* k-NN on the embedded digits (top-k, label-mismatch loss, the default embedding), metric:
  test accuracy at k = 5 (higher is better).

Every estimator that uses noise gets the same fixed sigma (1; k-NN: its default 0.3), and
DLM runs once more with a learned sigma (its own column), so that no other column gets a
learned scale the rest lack. `spo+` needs the true cost of every part (`Target.weights`), which only the shortest-path task
has, and `fy` needs a true structure, which the k-NN task does not have (its target is the
label-mismatch weights of the candidates, not one right set of neighbours): those cells are
"n/a". Times are the trainer's seconds per epoch.

    python3 bench/estimator_table.py [--seeds 1,2,3] [--quick] [--out docs/estimators.json]
        [--update docs/results.md]

`--update` replaces the table in docs/results.md (found by its header line) and the line with
the date and settings above it. Builds target/release/dlm if missing (`--dlm PATH` to use
another binary).
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone

# Column label -> (--estimator, whether the noise scale is learned).
COLUMNS = {
    "dlm": ("dlm", False),
    "dlm, learned sigma": ("dlm", True),
    "fy": ("fy", False),
    "blackbox": ("blackbox", False),
    "imle": ("imle", False),
    "spo+": ("spo+", False),
}
ESTIMATORS = list(COLUMNS)
NOISELESS = {"blackbox", "spo+"}


def tasks(quick):
    """(label, metric name, better, args, which estimators apply)."""
    sort_sizes = [10] if quick else [10, 25, 50, 100]
    sort_epochs = "30" if quick else "300"
    out = []
    for d in sort_sizes:
        out.append((f"sort d={d}", "any wrong", "lower",
                    ["--task", "sort", "--n", str(d), "--epochs", sort_epochs, "--patience", "0"],
                    [e for e in ESTIMATORS if e != "spo+"]))
    for deg in ([4] if quick else [1, 2, 4, 6]):
        out.append((f"shortest path deg {deg}", "normalized regret", "lower",
                    ["--task", "shortest-path", "--deg", str(deg), "--epochs", "3" if quick else "20",
                     "--batch", "32"],
                    ESTIMATORS))
    out.append(("k-NN digits", "accuracy k=5", "higher",
                ["--task", "knn", "--data", "digits", "--epochs", "2" if quick else "15"],
                ["dlm", "dlm, learned sigma", "blackbox", "imle"]))
    return out


def metric(label, v):
    t = v["test"]
    if label.startswith("sort"):
        return t["prop_any_wrong"]
    if label.startswith("shortest"):
        return t["normalized_regret"]
    return t["accuracy"]["5"]


def run(dlm, args, column, seed):
    estimator, learned = COLUMNS[column]
    cmd = [dlm, "train", *args, "--estimator", estimator, "--seed", str(seed), "--json", "--quiet"]
    task = args[args.index("--task") + 1]
    if learned:
        cmd += ["--sigma", "learned"]
    elif estimator not in NOISELESS and task != "knn":
        # The same fixed noise scale for every estimator that uses noise (k-NN keeps its
        # task default, fixed 0.3).
        cmd += ["--sigma", "fixed:1"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    return json.loads(r.stdout), cmd


def fmt(vals, pct):
    m = statistics.mean(vals)
    s = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{100 * m:.1f} ± {100 * s:.1f}%" if pct else f"{m:.3f} ± {s:.3f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--quick", action="store_true", help="one size per task, few epochs (smoke test)")
    ap.add_argument("--dlm", default="target/release/dlm")
    ap.add_argument("--out", default=None, help="write every run as JSON here")
    ap.add_argument("--update", default=None, help="replace the table in this Markdown file")
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.chdir(root)
    if not os.path.exists(a.dlm):
        subprocess.run(["cargo", "build", "--release", "-p", "dlm-cli"], check=True)
    seeds = [int(s) for s in a.seeds.split(",")]
    runs = []
    started = time.time()
    table = {}
    for label, mname, better, args, ests in tasks(a.quick):
        for e in ESTIMATORS:
            if e not in ests:
                table[(label, e)] = None
                continue
            vals, secs = [], []
            for s in seeds:
                v, cmd = run(a.dlm, args, e, s)
                vals.append(metric(label, v))
                secs.append(v["seconds_per_epoch"])
                runs.append({"task": label, "estimator": e, "seed": s, "command": " ".join(cmd[1:]),
                             "metric": mname, "value": vals[-1], "seconds_per_epoch": secs[-1],
                             "epochs_run": v["epochs_run"]})
                print(f"{label:24} {e:9} seed {s}: {mname} {vals[-1]:.4f}, {secs[-1] * 1e3:.2f} ms/epoch",
                      file=sys.stderr)
            table[(label, e)] = (vals, secs)
    labels = [(t[0], t[1], t[2]) for t in tasks(a.quick)]
    head = "| task (metric) | " + " | ".join(ESTIMATORS) + " |"
    lines = [head, "|---|" + "---|" * len(ESTIMATORS)]
    for label, mname, better in labels:
        cells = []
        best = None
        means = {e: statistics.mean(table[(label, e)][0]) for e in ESTIMATORS if table[(label, e)]}
        if means:
            target = (min if better == "lower" else max)(means.values())
            best = {e for e, m in means.items() if m == target}
        for e in ESTIMATORS:
            c = table[(label, e)]
            if c is None:
                cells.append("n/a")
                continue
            vals, secs = c
            cell = f"{fmt(vals, True)}<br>{statistics.median(secs) * 1e3:.2f} ms/ep"
            cells.append(f"**{cell}**" if best and e in best else cell)
        lines.append(f"| {label} ({mname}, {better} is better) | " + " | ".join(cells) + " |")
    md = "\n".join(lines)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    settings = (f"Run {when} on {os.cpu_count()} cores ({cpu}, {platform.system()}), seeds "
                f"{a.seeds}, {time.time() - started:.0f} s in all: "
                f"`python3 bench/estimator_table.py --seeds {a.seeds}{' --quick' if a.quick else ''}`.")
    print(settings)
    print(md)
    if a.out:
        json.dump({"date": when, "cpu": cpu, "cores": os.cpu_count(), "seeds": seeds, "runs": runs},
                  open(a.out, "w"), indent=1)
    if a.update:
        text = open(a.update).read()
        if head not in text:
            text = text.rstrip("\n") + "\n\n## Estimators x tasks (`bench/estimator_table.py`)\n\n" + \
                settings + "\n\n" + md + "\n"
            open(a.update, "w").write(text)
            return
        i = text.index(head)
        j = text.find("\n\n", i)
        j = len(text) if j < 0 else j
        k = text.rindex("\n\n", 0, i) + 2
        prev = text[k:i]
        if prev.startswith("Run "):
            text = text[:k] + settings + "\n\n" + md + text[j:]
        else:
            text = text[:i] + settings + "\n\n" + md + text[j:]
        open(a.update, "w").write(text)


if __name__ == "__main__":
    main()
