#!/usr/bin/env python3
"""Experiment 1 sweep: learning to sort by matching, learned vs fixed vs no noise scale.

Runs `dlm train --task sort` for every sequence length d, sigma mode and seed (the same seeds for
every mode), evaluates each saved model on other test ranges with `dlm eval`, and writes
docs/results-sort.json plus a Markdown table (printed, and spliced into docs/results.md between
the markers <!-- sort-table --> and <!-- /sort-table -->).

Usage: bench/sort_results.py [--dlm target/release/dlm] [--n 5,10,15,25,50,100] [--seeds 1,2,3]
                            [--modes learned,fixed:1,none] [--extra "..."]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

RANGES = ["0,1", "0.25,0.75", "0,10", "-1,0"]


def run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{out.stderr}")
    return json.loads(out.stdout)


def mean_sd(v):
    m = statistics.fmean(v)
    return m, (statistics.stdev(v) if len(v) > 1 else 0.0)


def fmt(v, digits=3):
    m, s = mean_sd(v)
    return f"{m:.{digits}f} ± {s:.{digits}f}" if len(v) > 1 else f"{m:.{digits}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dlm", default="target/release/dlm")
    ap.add_argument("--n", default="5,10,15,25,50,100")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--modes", default="learned,fixed:1,none")
    ap.add_argument("--extra", default="", help="extra options for dlm train")
    ap.add_argument("--out", default="docs/results-sort.json")
    ap.add_argument("--results-md", default="docs/results.md")
    a = ap.parse_args()
    if not os.path.exists(a.dlm):
        sys.exit(f"{a.dlm} not found: build it with cargo build --release -p dlm-cli")
    rows = []
    tmp = tempfile.mkdtemp(prefix="dlm-sort-")
    started = time.time()
    for n in [int(x) for x in a.n.split(",")]:
        for mode in a.modes.split(","):
            for seed in [int(x) for x in a.seeds.split(",")]:
                model = os.path.join(tmp, f"m-{n}-{mode.replace(':', '_')}-{seed}.dlm")
                cmd = [a.dlm, "train", "--task", "sort", "--n", str(n), "--sigma", mode,
                       "--seed", str(seed), "--save", model, "--json", "--quiet"] + a.extra.split()
                t = run(cmd)
                gen = {}
                for r in RANGES[1:]:
                    e = run([a.dlm, "eval", "--load", model, "--test-range", r, "--json"])
                    gen[r] = e["test"]
                rows.append({"n": n, "mode": mode, "seed": seed, "train": t, "generalisation": gen})
                print(f"d={n:<4} sigma={mode:<8} seed={seed}: epochs {t['epochs_run']:>5}, "
                      f"{t['seconds_per_epoch']*1e3:8.3f} ms/epoch, any wrong {t['test']['prop_any_wrong']:.3f}, "
                      f"wrong {t['test']['prop_wrong']:.4f}, tau {t['test']['kendall_tau']:.4f}", file=sys.stderr)
    with open(a.out, "w") as f:
        json.dump({"command": " ".join(sys.argv), "rows": rows}, f, indent=1)
    lines = ["| d | sigma | prop. wrong | prop. any wrong | Kendall tau | epochs | s/epoch (ms) | train s | any wrong on " + ", ".join(f"[{r}]" for r in RANGES[1:]) + " |",
             "|---|---|---|---|---|---|---|---|---|"]
    for n in sorted({r["n"] for r in rows}):
        for mode in a.modes.split(","):
            sel = [r for r in rows if r["n"] == n and r["mode"] == mode]
            if not sel:
                continue
            t = [r["train"] for r in sel]
            gen = " / ".join(fmt([r["generalisation"][g]["prop_any_wrong"] for r in sel], 2) for g in RANGES[1:])
            lines.append(
                f"| {n} | {mode} | {fmt([x['test']['prop_wrong'] for x in t], 4)} | {fmt([x['test']['prop_any_wrong'] for x in t])} | "
                f"{fmt([x['test']['kendall_tau'] for x in t], 4)} | {fmt([x['epochs_run'] for x in t], 0)} | "
                f"{fmt([1e3 * x['seconds_per_epoch'] for x in t], 3)} | {fmt([x['train_seconds'] for x in t], 2)} | {gen} |")
    table = "\n".join(lines)
    print(table)
    print(f"\n{len(rows)} runs in {time.time() - started:.0f} s", file=sys.stderr)
    if os.path.exists(a.results_md):
        text = open(a.results_md).read()
        start, end = "<!-- sort-table -->", "<!-- /sort-table -->"
        if start in text and end in text:
            pre, rest = text.split(start, 1)
            _, post = rest.split(end, 1)
            with open(a.results_md, "w") as f:
                f.write(pre + start + "\n" + table + "\n" + end + post)


if __name__ == "__main__":
    main()
