#!/usr/bin/env python3
"""Compare dlm's LAPJV solver with scipy and the `lapjv` package on identical matrices.

For every n in --sizes the script draws --count uniform [0, 1) matrices (float64, fixed
numpy seed), writes them to a temporary directory as ``n<N>.npy`` (shape [count, N, N]),
and then

1. runs ``<dlm> bench lap-files --json DIR``, which solves every matrix with dlm's
   ``lapjv`` (maximisation) and prints a JSON array of
   ``{"n": N, "algo": "lapjv", "us_per_solve": median_us, "total": [optimal totals...]}``;
2. times ``scipy.optimize.linear_sum_assignment(M, maximize=True)`` and
   ``lapjv.lapjv(-M, force_doubles=True)`` (the package minimises, so it gets the negated
   matrix, negated before timing starts) on the same matrices: median over all solves,
   after a warm-up pass;
3. checks that the three solvers agree on every optimal total (relative 1e-9), and prints
   a table plus a JSON summary with the ours/lapjv and ours/scipy time ratios per n.

``lapjv.lapjv`` silently casts float64 input to float32 unless ``force_doubles=True``;
the float32 default is also timed, for information only (column ``lapjv_f32``), and is
not part of the agreement check. Python-side timings include the Python call overhead
(about 1-2 us per call), which dominates at small n; dlm's timing is measured inside the
binary.

Nothing is installed by this script. Requirements: ``pip install numpy scipy lapjv``.

Example::

    cargo build --release -p dlm-cli      # or however target/release/dlm is built
    python3 bench/compare_lap.py --dlm target/release/dlm --sizes 5,10,50,100,200
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REL_TOL = 1e-9


def _require_modules():
    missing = []
    mods = {}
    for name in ("numpy", "scipy.optimize", "lapjv"):
        try:
            mods[name] = __import__(name, fromlist=["_"])
        except ImportError:
            missing.append(name.split(".")[0])
    if missing:
        sys.stderr.write(
            "compare_lap.py: missing Python package(s): %s\n"
            "Install them with:  pip install scipy lapjv   (numpy comes with scipy)\n"
            % ", ".join(sorted(set(missing)))
        )
        sys.exit(2)
    return mods["numpy"], mods["scipy.optimize"], mods["lapjv"]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dlm", default="target/release/dlm", help="path to the dlm binary (default: %(default)s)")
    ap.add_argument("--sizes", default="5,10,50,100,200", help="comma-separated matrix sizes (default: %(default)s)")
    ap.add_argument("--count", type=int, default=50, help="matrices per size (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=12345, help="numpy seed (default: %(default)s)")
    ap.add_argument(
        "--min-time",
        type=float,
        default=0.3,
        help="minimum seconds of timed solves per solver and size (default: %(default)s)",
    )
    ap.add_argument("--keep", metavar="DIR", help="write the .npy files to DIR and keep them (default: a temp dir)")
    ap.add_argument("--json-out", metavar="FILE", help="also write the JSON summary to FILE")
    return ap.parse_args(argv)


def time_solver(np, fn, mats, min_time):
    """Median wall time per solve in microseconds; every matrix is solved >= 1 time per pass."""
    for m in mats:  # warm-up pass
        fn(m)
    samples = []
    start = time.perf_counter()
    while True:
        for m in mats:
            t0 = time.perf_counter()
            fn(m)
            samples.append(time.perf_counter() - t0)
        if time.perf_counter() - start >= min_time:
            break
    return float(np.median(samples)) * 1e6


def run_dlm(dlm, directory):
    cmd = [dlm, "bench", "lap-files", "--json", directory]
    try:
        proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        sys.stderr.write("compare_lap.py: dlm binary not found at %r (use --dlm PATH)\n" % dlm)
        sys.exit(2)
    except subprocess.CalledProcessError as e:
        sys.stderr.write("compare_lap.py: %s failed (exit %d)\n%s%s" % (" ".join(cmd), e.returncode, e.stdout, e.stderr))
        sys.exit(1)
    out = proc.stdout
    start = out.find("[")
    if start < 0:
        sys.stderr.write("compare_lap.py: no JSON array in dlm output:\n%s\n" % out)
        sys.exit(1)
    records = json.loads(out[start : out.rfind("]") + 1])
    return {int(r["n"]): r for r in records if r.get("algo", "lapjv") == "lapjv"}


def close(a, b):
    return abs(a - b) <= REL_TOL * max(abs(a), abs(b), 1e-300)


def main(argv=None):
    args = parse_args(argv)
    np, sopt, lapjv = _require_modules()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    rng = np.random.default_rng(args.seed)

    with tempfile.TemporaryDirectory(prefix="compare_lap_") as tmp:
        directory = args.keep or tmp
        os.makedirs(directory, exist_ok=True)
        data = {}
        for n in sizes:
            mats = rng.random((args.count, n, n))  # float64, uniform [0, 1)
            np.save(os.path.join(directory, "n%d.npy" % n), mats)
            data[n] = mats

        ours = run_dlm(args.dlm, directory)

        rows = []
        all_ok = True
        for n in sizes:
            mats = [np.ascontiguousarray(m) for m in data[n]]
            neg = [np.ascontiguousarray(-m) for m in mats]
            if n not in ours:
                sys.stderr.write("compare_lap.py: dlm printed no result for n=%d\n" % n)
                sys.exit(1)
            rec = ours[n]
            our_tot = [float(t) for t in rec["total"]]

            sc_tot = []
            for m in mats:
                r, c = sopt.linear_sum_assignment(m, maximize=True)
                sc_tot.append(float(m[r, c].sum()))
            lj_tot = []
            for m, mn in zip(mats, neg):
                x = lapjv.lapjv(mn, force_doubles=True)[0]
                lj_tot.append(float(m[np.arange(n), x].sum()))

            bad = []
            if len(our_tot) != len(mats):
                bad.append("dlm returned %d totals for %d matrices" % (len(our_tot), len(mats)))
            for k, (a, b, c) in enumerate(zip(our_tot, sc_tot, lj_tot)):
                if not (close(a, b) and close(a, c)):
                    bad.append("matrix %d: dlm %.17g scipy %.17g lapjv %.17g" % (k, a, b, c))
            ok = not bad
            all_ok &= ok
            for msg in bad[:5]:
                sys.stderr.write("n=%d: MISMATCH %s\n" % (n, msg))

            t_sc = time_solver(np, lambda m: sopt.linear_sum_assignment(m, maximize=True), mats, args.min_time)
            t_lj = time_solver(np, lambda m: lapjv.lapjv(m, force_doubles=True), neg, args.min_time)
            t_lj32 = time_solver(np, lambda m: lapjv.lapjv(m), neg, args.min_time)
            t_us = float(rec["us_per_solve"])
            rows.append(
                {
                    "n": n,
                    "count": len(mats),
                    "ours_us": t_us,
                    "lapjv_us": t_lj,
                    "lapjv_f32_us": t_lj32,
                    "scipy_us": t_sc,
                    "ours_over_lapjv": t_us / t_lj,
                    "ours_over_scipy": t_us / t_sc,
                    "totals_agree": ok,
                }
            )

    hdr = "%5s %6s %11s %11s %13s %11s %12s %12s %6s" % (
        "n", "count", "ours_us", "lapjv_us", "lapjv_f32_us", "scipy_us", "ours/lapjv", "ours/scipy", "agree")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(
            "%5d %6d %11.2f %11.2f %13.2f %11.2f %12.3f %12.3f %6s"
            % (r["n"], r["count"], r["ours_us"], r["lapjv_us"], r["lapjv_f32_us"], r["scipy_us"],
               r["ours_over_lapjv"], r["ours_over_scipy"], "yes" if r["totals_agree"] else "NO")
        )
    summary = {
        "seed": args.seed,
        "rel_tol": REL_TOL,
        "lapjv_call": "lapjv.lapjv(-M, force_doubles=True)",
        "scipy_call": "scipy.optimize.linear_sum_assignment(M, maximize=True)",
        "all_totals_agree": all_ok,
        "results": rows,
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.write(text + "\n")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
