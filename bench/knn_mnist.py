#!/usr/bin/env python3
"""Issue 9's MNIST / Fashion-MNIST measurements on the CPU, and their tables for results.md.

    python3 bench/knn_mnist.py [--out DIR] [--only grid,table,eps,lenet] [--render]

Runs (each a `dlm train --task knn ... --json`, its JSON kept in DIR, default bench-out/knn-mnist;
a run whose JSON is already there is not run again, so an interrupted sweep resumes):

* grid:  the best fixed sigma on MNIST (seed 0, 3 epochs, native mlp 784-256-64): 0.1, 0.3, 1;
* table: 5 seeds (0-4) x {none, fixed:BEST, learned from BEST (`--sigma-init BEST --sigma-opt
         adam --sigma-lr 1e-3`), learned from BEST with the seed's SGD 1e-5}, 3 epochs each;
* eps:   an embedding whose distances grow (`--mu-lr 3e-2`), seed vs adaptive eps policy,
         seeds 0-2, 3 epochs;
* lenet: the seed's LeNet mu and sigma networks through the torch plugin on the CPU
         (`torch-lenet`, `torch-sigma-mnist:opt=sgd,lr=1e-5`, adaptive eps), 30 minutes of
         training (`--time-budget 1800`) on MNIST and on Fashion-MNIST, accuracy after every
         epoch on 1000 test images.

Needs target/release/dlm, the torch plugin in target/release/ or plugins/torch/target/release/
(scripts/test-torch.sh --release, or the README of plugins/torch), and the data
(scripts/fetch-data.sh). `--render` prints the Markdown tables from DIR without running.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DLM = os.path.join(ROOT, "target", "release", "dlm")
KS = ["1", "3", "5", "9"]
BASE = ["train", "--task", "knn", "--data", "mnist", "--epochs", "3", "--eval-k", "1,3,5,9"]
GRID = ["0.1", "0.3", "1"]
SEEDS = range(5)
EPS_SEEDS = range(3)


def plugin():
    for p in ("target/release/libdlm_plugin_torch.so",
              "plugins/torch/target/release/libdlm_plugin_torch.so"):
        if os.path.exists(os.path.join(ROOT, p)):
            return os.path.join(ROOT, p)
    sys.exit("knn_mnist: the torch plugin is not built (scripts/test-torch.sh --release)")


def run(out, name, args):
    """Runs dlm with ARGS + --json unless OUT/NAME.json exists; returns the parsed JSON."""
    path = os.path.join(out, name + ".json")
    if os.path.exists(path):
        return json.load(open(path))
    t, load = time.time(), os.getloadavg()[0]
    with open(os.path.join(out, name + ".err"), "w") as err:
        p = subprocess.run([DLM] + args + ["--json"], stdout=subprocess.PIPE, stderr=err,
                           text=True, cwd=ROOT)
    if p.returncode != 0:
        sys.exit(f"knn_mnist: {name} failed with exit code {p.returncode} "
                 f"(see {os.path.join(out, name + '.err')})")
    d = json.loads(p.stdout)
    d["_wall"], d["_load_start"], d["_load_end"] = time.time() - t, load, os.getloadavg()[0]
    d["_cmd"] = "dlm " + " ".join(args) + " --json"
    d["_date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))
    with open(path + ".tmp", "w") as f:
        json.dump(d, f)
    os.replace(path + ".tmp", path)
    print(name, d["test"]["accuracy"], f"{d['_wall']:.1f} s", file=sys.stderr, flush=True)
    return d


def mean4(d):
    return sum(d["test"]["accuracy"].values()) / 4


def best_fixed(out):
    return max(GRID, key=lambda v: mean4(json.load(open(os.path.join(out, f"grid-fixed{v}.json")))))


def runs(out, only):
    if "grid" in only:
        for v in GRID:
            run(out, f"grid-fixed{v}", BASE + ["--seed", "0", "--sigma", f"fixed:{v}"])
    if "table" in only:
        best = best_fixed(out)
        for s in SEEDS:
            run(out, f"none-s{s}", BASE + ["--seed", str(s), "--sigma", "none"])
            run(out, f"fixed-s{s}", BASE + ["--seed", str(s), "--sigma", f"fixed:{best}"])
            run(out, f"learned-s{s}", BASE + ["--seed", str(s), "--sigma", "learned", "--sigma-init",
                                             best, "--sigma-opt", "adam", "--sigma-lr", "1e-3"])
            run(out, f"learnedsgd-s{s}", BASE + ["--seed", str(s), "--sigma", "learned",
                                                "--sigma-init", best])
    if "eps" in only:
        for s in EPS_SEEDS:
            for pol in ("seed", "adaptive"):
                run(out, f"eps-{pol}-s{s}", BASE + ["--seed", str(s), "--mu-lr", "3e-2",
                                                   "--eps-policy", pol])
    if "lenet" in only:
        p = plugin()
        for data in ("mnist", "fashion-mnist"):
            run(out, f"lenet-{data}", [
                "--plugin", p, "train", "--task", "knn", "--data", data, "--mu", "torch-lenet",
                "--sigma-net", "torch-sigma-mnist:opt=sgd,lr=1e-5", "--sigma", "learned",
                "--eps-policy", "adaptive", "--time-budget", "1800", "--eval-every", "1",
                "--eval-k", "1,3,5,9", "--save", os.path.join(out, f"lenet-{data}.dlm")])


def pm(xs):
    return f"{100 * statistics.mean(xs):.2f} ± {100 * statistics.stdev(xs):.2f}"


def load(out, name):
    path = os.path.join(out, name + ".json")
    return json.load(open(path)) if os.path.exists(path) else None


def render(out):
    md = []
    grid = {v: load(out, f"grid-fixed{v}") for v in GRID}
    if all(grid.values()):
        md.append("Best fixed sigma (seed 0, 3 epochs; mean test accuracy over k = 1, 3, 5, 9): "
                  + ", ".join(f"fixed:{v} {100 * mean4(d):.2f} %" for v, d in grid.items()))
        md.append("")
    rows = [r for r in ("none", "fixed", "learned", "learnedsgd")
            if all(load(out, f"{r}-s{s}") for s in SEEDS)]
    if rows:
        best = best_fixed(out)
        names = {"none": "none", "fixed": f"fixed:{best}",
                 "learned": f"learned, init {best}, Adam 1e-3",
                 "learnedsgd": f"learned, init {best}, SGD 1e-5 (the seed's optimizer)"}
        md.append("| sigma | k = 1 | k = 3 | k = 5 | k = 9 | mean of the 4 | sigma (first → last epoch) "
                  "| \\|dL/dsigma\\| (first → last epoch) | zero (loss), last epoch |")
        md.append("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            ds = [load(out, f"{r}-s{s}") for s in SEEDS]
            accs = [pm([d["test"]["accuracy"][k] for d in ds]) for k in KS]
            m = statistics.mean(mean4(d) for d in ds)
            if r == "none":
                sig, grad = "0", "—"
            else:
                st = [d["sigma_trace"] for d in ds]
                first = statistics.mean(t["mean"][0] for t in st)
                last = statistics.mean(t["mean"][-1] for t in st)
                lo, hi = min(t["min"][-1] for t in st), max(t["max"][-1] for t in st)
                sig = f"{first:.3f} → {last:.3f} [{lo:.2f}-{hi:.2f}]"
                g0 = [t["grad_abs_mean"][0] for t in st]
                g1 = [t["grad_abs_mean"][-1] for t in st]
                grad = f"{min(g0):.2f}-{max(g0):.2f} → {min(g1):.2f}-{max(g1):.2f}"
            z = [d["zero_rate_with_loss_trace"][-1] for d in ds]
            md.append(f"| {names[r]} | " + " | ".join(accs) + f" | {100 * m:.2f} | {sig} | {grad} "
                      f"| {min(z):.2f}-{max(z):.2f} |")
        md.append("")
    if all(load(out, f"eps-{p}-s{s}") for p in ("seed", "adaptive") for s in EPS_SEEDS):
        md.append("| eps policy | k = 1 | k = 3 | k = 5 | k = 9 | eps per epoch (seed 0) "
                  "| zero (loss) per epoch (seed 0) | final eps (range over seeds) "
                  "| zero (loss), last epoch | zero (all), last epoch |")
        md.append("|---|---|---|---|---|---|---|---|---|---|")
        for p in ("seed", "adaptive"):
            ds = [load(out, f"eps-{p}-s{s}") for s in EPS_SEEDS]
            accs = [pm([d["test"]["accuracy"][k] for d in ds]) for k in KS]
            e0 = ", ".join(f"{e:.3g}" for e in ds[0]["epsilon_trace"])
            z0 = ", ".join(f"{z:.2f}" for z in ds[0]["zero_rate_with_loss_trace"])
            ef = [d["epsilon_final"] for d in ds]
            zl = [d["zero_rate_with_loss_trace"][-1] for d in ds]
            za = [d["zero_rate_trace"][-1] for d in ds]
            md.append(f"| {p} | " + " | ".join(accs) + f" | {e0} | {z0} | {min(ef):.3g} to "
                      f"{max(ef):.3g} | {min(zl):.2f}-{max(zl):.2f} | {min(za):.3f}-{max(za):.3f} |")
        md.append("")
    for data in ("mnist", "fashion-mnist"):
        d = load(out, f"lenet-{data}")
        if not d:
            continue
        a, px = d["test"]["accuracy"], d["test"]["pixel_knn_accuracy"]
        md.append(f"**{data}**, `{d['_cmd'].replace(plugin_path(d), 'PLUGIN')}` ({d['_date']}; "
                  f"1-minute load {d['_load_start']:.1f} at the start, {d['_load_end']:.1f} at the end): "
                  f"{d['epochs_run']} epochs in {d['train_seconds']:.0f} s of training "
                  f"(stopped by {d['stopped_by']}); test accuracy "
                  + " / ".join(f"{100 * a[k]:.2f}" for k in KS) + " % (k = 1 / 3 / 5 / 9), pixel k-NN "
                  + " / ".join(f"{100 * px[k]:.2f}" for k in KS) + " %.")
        md.append("")
        tr = d.get("test_accuracy_trace", [])
        md.append("| epoch | " + " | ".join(str(i + 1) for i in range(len(tr))) + " |")
        md.append("|---|" + "---|" * len(tr))
        md.append("| test accuracy, k = 1 (first 1000 test images) | "
                  + " | ".join(f"{100 * x:.1f}" for x in tr) + " |")
        md.append("| training loss | " + " | ".join(f"{x:.3f}" for x in d["train_loss_trace"]) + " |")
        md.append("| eps | " + " | ".join(f"{x:.3g}" for x in d["epsilon_trace"]) + " |")
        md.append("| zero (loss) | " + " | ".join(f"{x:.2f}" for x in d["zero_rate_with_loss_trace"]) + " |")
        md.append("| sigma (mean) | " + " | ".join(f"{x:.3f}" for x in d["sigma_trace"]["mean"]) + " |")
        md.append("")
    print("\n".join(md))


def plugin_path(d):
    args = d["_cmd"].split()
    return args[args.index("--plugin") + 1] if "--plugin" in args else "\0"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-out", "knn-mnist"))
    ap.add_argument("--only", default="grid,table,eps,lenet")
    ap.add_argument("--render", action="store_true", help="only print the tables from --out")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    if not a.render:
        runs(a.out, set(a.only.split(",")))
    render(a.out)


if __name__ == "__main__":
    main()
