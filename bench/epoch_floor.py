#!/usr/bin/env python3
"""Epoch time against the solver floor, from `dlm train --profile --json`.

* the trend: sort epochs at d = 5 ... 200 (5 draws) and at d = 50 with 1 ... 20 draws;
* before / after (with --before BIN, an older dlm that has --profile and `bench knn-step`):
  sort at d = 25, 50, 100, the k-NN step against its GEMM floor (`dlm bench knn-step`) and
  the shortest-path SPO+ epoch, the two binaries run alternately, round after round, so that
  both see the same load;
* the shortest-path SPO+ epoch (PyEPO's benchmark protocol: 1000 instances, batch 32,
  20 epochs) and its profile.

With --before the comparison also goes to --compare-out (default
docs/perf-before-after.json), which a run without --before leaves as it is.

Every ratio is computed within one run (epoch / floor from the same profile, step / GEMM
floor from the same `bench knn-step`); medians over --rounds rounds. The 1-minute load
average before and after every run is recorded. Writes --out (default
docs/perf-epoch-floor.json); bench/results_tables.py renders it into docs/results.md and
docs/perf-trend.svg.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

SIZES = [5, 10, 25, 50, 100, 200]
DRAWS = [1, 2, 5, 10, 20]
COMPARE = [25, 50, 100]
# Epochs per run: about a second or two each; the same epochs for every binary and round
# (solve times change as the network learns, so a comparison must cover the same epochs).
EPOCHS = {5: 2000, 10: 1000, 25: 400, 50: 200, 100: 100, 200: 30}


def run(cmd):
    load0 = os.getloadavg()[0]
    out = subprocess.run(cmd, capture_output=True, text=True)
    load1 = os.getloadavg()[0]
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return json.loads(out.stdout), [load0, load1]


def sort_run(dlm, d, draws=5, epochs=None):
    cmd = [dlm, "train", "--task", "sort", "--n", str(d), "--draws", str(draws), "--seed", "1",
           "--epochs", str(epochs or EPOCHS[d]), "--patience", "0", "--profile", "--json", "--quiet"]
    v, load = run(cmd)
    p = v["profile"]
    return {"cmd": " ".join(cmd[1:]), "load": load, "epoch_seconds": p["epoch_seconds"],
            "solver_floor_seconds": p["solver_floor_seconds"], "floor_ratio": p["floor_ratio"],
            "solves_per_epoch": p["solves_per_epoch"], "seconds_per_solve": p["seconds_per_solve"],
            "phases": p["phases"]}


def knn_run(dlm):
    cmd = [dlm, "bench", "knn-step", "--json"]
    v, load = run(cmd)
    v["cmd"] = " ".join(cmd[1:])
    v["load"] = load
    return v


def sp_run(dlm, profile):
    cmd = [dlm, "train", "--task", "shortest-path", "--estimator", "spo+", "--epochs", "20",
           "--json", "--quiet"] + (["--profile"] if profile else [])
    v, load = run(cmd)
    r = {"cmd": " ".join(cmd[1:]), "load": load, "seconds_per_epoch": v["seconds_per_epoch"]}
    if profile:
        p = v["profile"]
        r.update({k: p[k] for k in ("epoch_seconds", "solver_floor_seconds", "floor_ratio",
                                    "phases")})
    return r


def med(rows, key):
    return statistics.median(r[key] for r in rows)


def summary(rows):
    s = {k: med(rows, k) for k in ("epoch_seconds", "solver_floor_seconds", "floor_ratio",
                                   "solves_per_epoch", "seconds_per_solve") if k in rows[0]}
    if "floor_ratio" in rows[0]:
        s["floor_ratio_range"] = [min(r["floor_ratio"] for r in rows),
                                  max(r["floor_ratio"] for r in rows)]
    if "phases" in rows[0]:
        s["phases"] = {k: statistics.median(r["phases"][k] for r in rows)
                       for k in rows[0]["phases"]}
    s["load"] = [min(x for r in rows for x in r["load"]), max(x for r in rows for x in r["load"])]
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dlm", default="target/release/dlm")
    ap.add_argument("--before", help="an older dlm binary to compare against")
    ap.add_argument("--before-label", default="before")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="docs/perf-epoch-floor.json")
    ap.add_argument("--compare-out", default="docs/perf-before-after.json",
                    help="where the before/after comparison goes (only with --before)")
    a = ap.parse_args()
    start = datetime.datetime.now(datetime.timezone.utc)
    res = {"schema": "dlm-bench-epoch-floor/1", "date": start.isoformat(timespec="seconds"),
           "command": " ".join(sys.argv), "rounds": a.rounds, "machine": {
               "nproc": os.cpu_count(), "platform": platform.platform(),
               "cpu_model": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                                  if l.startswith("model name")), "?")},
           "git_commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True,
                                        text=True).stdout.strip(),
           "epochs": EPOCHS}
    raw = {"sizes": {d: [] for d in SIZES}, "draws": {k: [] for k in DRAWS}}
    cmp_rows = {"after": {d: [] for d in COMPARE}, "before": {d: [] for d in COMPARE}}
    knn = {"after": [], "before": []}
    sp = {"after": [], "before": [], "profile": []}
    for r in range(a.rounds):
        print(f"round {r + 1}/{a.rounds}", file=sys.stderr)
        for d in SIZES:
            raw["sizes"][d].append(sort_run(a.dlm, d))
        for k in DRAWS:
            raw["draws"][k].append(sort_run(a.dlm, 50, draws=k, epochs=EPOCHS[50]))
        sp["profile"].append(sp_run(a.dlm, True))
        sides = [("after", a.dlm)] + ([("before", a.before)] if a.before else [])
        if r % 2 == 1:
            sides.reverse()
        for side, binary in sides:
            for d in COMPARE:
                cmp_rows[side][d].append(sort_run(binary, d))
            knn[side].append(knn_run(binary))
            sp[side].append(sp_run(binary, False))
    res["trend_d"] = [{"d": d, "draws": 5, **summary(raw["sizes"][d])} for d in SIZES]
    res["trend_draws"] = [{"d": 50, "draws": k, **summary(raw["draws"][k])} for k in DRAWS]
    res["compare"] = {"before_label": a.before_label if a.before else None, "sort": [], "knn": {},
                      "shortest_path": {}}
    for side in ("before", "after"):
        if not knn[side]:
            continue
        res["compare"]["sort"] += [{"side": side, "d": d, **summary(cmp_rows[side][d])}
                                   for d in COMPARE]
        res["compare"]["knn"][side] = {
            k: statistics.median(v[k] for v in knn[side])
            for k in ("step_seconds", "gemm_floor_seconds", "floor_ratio",
                      "gemm_flops_per_second", "gemm_flops_per_second_one_thread",
                      "flops_per_step")}
        res["compare"]["knn"][side]["floor_ratio_range"] = [
            min(v["floor_ratio"] for v in knn[side]), max(v["floor_ratio"] for v in knn[side])]
        res["compare"]["knn"][side]["phases"] = {
            k: statistics.median(v["phases"][k] for v in knn[side]) for k in knn[side][0]["phases"]}
        res["compare"]["knn"][side]["load"] = [min(x for v in knn[side] for x in v["load"]),
                                               max(x for v in knn[side] for x in v["load"])]
        res["compare"]["shortest_path"][side] = {
            "seconds_per_epoch": med(sp[side], "seconds_per_epoch"),
            "load": [min(x for v in sp[side] for x in v["load"]),
                     max(x for v in sp[side] for x in v["load"])]}
    res["shortest_path_profile"] = summary(sp["profile"])
    res["raw"] = {"sizes": raw["sizes"], "draws": raw["draws"], "compare_sort": cmp_rows,
                  "knn": knn, "shortest_path": sp}
    res["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    if a.before:
        keys = ("schema", "date", "finished", "command", "rounds", "machine", "git_commit",
                "epochs", "compare")
        json.dump({k: res[k] for k in keys} | {"raw": {k: res["raw"][k] for k in (
            "compare_sort", "knn", "shortest_path")}}, open(a.compare_out, "w"), indent=1)
    json.dump(res, open(a.out, "w"), indent=1)
    for row in res["trend_d"]:
        print(f"d={row['d']:>3}: epoch {row['epoch_seconds'] * 1e3:8.3f} ms, floor "
              f"{row['solver_floor_seconds'] * 1e3:8.3f} ms, ratio {row['floor_ratio']:.2f}",
              file=sys.stderr)
    for row in res["compare"]["sort"]:
        print(f"{row['side']:>6} d={row['d']:>3}: epoch {row['epoch_seconds'] * 1e3:8.3f} ms, "
              f"ratio {row['floor_ratio']:.2f}", file=sys.stderr)
    for side, v in res["compare"]["knn"].items():
        print(f"{side:>6} knn step {v['step_seconds'] * 1e3:.2f} ms, ratio {v['floor_ratio']:.2f}",
              file=sys.stderr)
    for side, v in res["compare"]["shortest_path"].items():
        print(f"{side:>6} spo+ epoch {v['seconds_per_epoch'] * 1e3:.3f} ms", file=sys.stderr)


if __name__ == "__main__":
    main()
