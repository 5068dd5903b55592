#!/usr/bin/env python3
"""Regenerates the performance tables of docs/results.md from docs/perf-*.json
(written by bench/perf_report.sh). Each table is replaced in place, found by its header."""
import json
import statistics

mt = json.load(open("docs/perf-matching.json"))
cmp = json.load(open("docs/perf-compare-lap.json"))
rows = cmp["results"] if isinstance(cmp, dict) else cmp
tk = json.load(open("docs/perf-topk.json"))
sortep = json.load(open("docs/perf-sort-epoch.json"))


def g(n, a, t):
    return next(r for r in mt if r["n"] == n and r["algo"] == a and r["threads"] == t)


L = ["| n | LAPJV µs/solve | batch size | batch solves/s, 1 thread | 2 threads | speed-up | kuhn_munkres µs/solve | km batch 1 / 2 threads |",
     "|---|---|---|---|---|---|---|---|"]
sp = []
for n in sorted({r["n"] for r in mt}):
    a1, a2, k1, k2 = g(n, "lapjv", 1), g(n, "lapjv", 2), g(n, "km", 1), g(n, "km", 2)
    sp.append(a2["batch_solves_per_sec"] / a1["batch_solves_per_sec"])
    L.append(f"| {n} | {a1['us_per_solve']:.2f} | {a1['batch_size']} | {a1['batch_solves_per_sec']:,.0f} | "
             f"{a2['batch_solves_per_sec']:,.0f} | {sp[-1]:.2f}x | {k1['us_per_solve']:.1f} | "
             f"{k1['batch_solves_per_sec']:,.0f} / {k2['batch_solves_per_sec']:,.0f} |")
mtab = "\n".join(L)
L = ["| n | ours (µs) | lapjv float64 (µs) | lapjv default float32 (µs) | scipy (µs) | ours / lapjv | ours / scipy | totals agree |",
     "|---|---|---|---|---|---|---|---|"]
for r in rows:
    L.append(f"| {r['n']} | {r['ours_us']:.2f} | {r['lapjv_us']:.1f} | {r['lapjv_f32_us']:.1f} | {r['scipy_us']:.1f} | "
             f"{r['ours_over_lapjv']:.3f} | {r['ours_over_scipy']:.3f} | {'yes' if r['totals_agree'] else 'NO'} |")
ctab = "\n".join(L)
L = ["| m (k = 9) | µs/solve | batch solves/s 1 thread | 2 threads |", "|---|---|---|---|"]
for m in sorted({r["m"] for r in tk}):
    a = next(r for r in tk if r["m"] == m and r["threads"] == 1)
    b = next(r for r in tk if r["m"] == m and r["threads"] == 2)
    L.append(f"| {m} | {a['us_per_solve']:.2f} | {a['batch_solves_per_sec']:,.0f} | {b['batch_solves_per_sec']:,.0f} |")
ttab = "\n".join(L)
# The authors' PyTorch figures are issue 3's (measured elsewhere, not run here): no ratio is
# formed with them, since a ratio is only claimed within one run.
ref = {5: 0.10, 10: 0.15, 15: 0.21}
L = ["| d | dlm, µs per epoch (median of 3 seeds × 2000 epochs) | authors' PyTorch, s per epoch (issue 3; not measured here) |", "|---|---|---|"]
for n in sorted(ref):
    m = statistics.median([r["seconds_per_epoch"] for r in sortep if r["n"] == n])
    L.append(f"| {n} | {m * 1e6:.0f} | {ref[n]} |")
stab = "\n".join(L)

md = open("docs/results.md").read()
for head, new in [("| d | dlm, µs per epoch", stab), ("| n | LAPJV µs/solve", mtab),
                  ("| n | ours (µs) |", ctab), ("| m (k = 9) |", ttab)]:
    i = md.index(head)
    j = md.index("\n\n", i)
    md = md[:i] + new + md[j:]
i = md.index("The batch speed-up on 2 cores is")
j = md.index(" (target 1.8x)", i)
md = md[:i] + f"The batch speed-up on 2 cores is {min(sp):.2f}-{max(sp):.2f}x" + md[j:]
big = [r for r in rows if r["n"] >= 50]
r64 = [r["ours_over_lapjv"] for r in big]
r32 = [r["ours_us"] / r["lapjv_f32_us"] for r in big]
i = md.index("Target ours/lapjv <= 1.0 at n = 50, 100, 200:")
j = md.index("float32 mode).", i) + len("float32 mode).")
verdict = "met" if max(r64) <= 1.0 else "NOT met"
md = md[:i] + (f"Target ours/lapjv <= 1.0 at n = 50, 100, 200: {verdict} ({min(r64):.2f}-{max(r64):.2f}; "
               f"{min(r32):.2f}-{max(r32):.2f} against lapjv's\nfloat32 mode).") + md[j:]
open("docs/results.md", "w").write(md)
print(stab, mtab, ctab, ttab, sep="\n\n")

# ---- Epoch time against the solver floor (bench/epoch_floor.py -> docs/perf-epoch-floor.json)
import math
import os

EF = "docs/perf-epoch-floor.json"


def ms(x):
    return f"{x * 1e3:.3f}" if x < 0.01 else f"{x * 1e3:.2f}"


def spread(rows, key="floor_ratio"):
    """`median (min-max)` of `key` over the rounds' raw rows."""
    v = sorted(r[key] for r in rows)
    return f"{statistics.median(v):.2f} ({v[0]:.2f}-{v[-1]:.2f})"


def replace_block(md, name, body):
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    i, j = md.index(start) + len(start), md.index(end)
    return md[:i] + "\n" + body + "\n" + md[j:]


def svg_plot(ef, path):
    """Two log-log panels: epoch and solver floor against d (5 draws) and against draws
    (d = 50), with the epoch / floor ratio printed at each point."""
    W, H, M = 880, 360, 58
    pw = (W - 3 * M) / 2
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           'font-family="sans-serif" font-size="12">', f'<rect width="{W}" height="{H}" fill="white"/>']

    def panel(x0, rows, key, xlabel, title):
        xs = [r[key] for r in rows]
        ys = [v for r in rows for v in (r["epoch_seconds"], r["solver_floor_seconds"])]
        lx0, lx1 = math.log10(min(xs)) - 0.05, math.log10(max(xs)) + 0.05
        ly0, ly1 = math.floor(math.log10(min(ys) * 1e3)), math.ceil(math.log10(max(ys) * 1e3))
        top, bottom = 34, H - 48

        def px(x):
            return x0 + (math.log10(x) - lx0) / (lx1 - lx0) * pw

        def py(s):
            return bottom - (math.log10(s * 1e3) - ly0) / (ly1 - ly0) * (bottom - top)
        out.append(f'<text x="{x0 + pw / 2}" y="20" text-anchor="middle" font-weight="bold">{title}</text>')
        out.append(f'<rect x="{x0}" y="{top}" width="{pw}" height="{bottom - top}" fill="none" stroke="#888"/>')
        for e in range(ly0, ly1 + 1):
            y = bottom - (e - ly0) / (ly1 - ly0) * (bottom - top)
            out.append(f'<line x1="{x0}" x2="{x0 + pw}" y1="{y}" y2="{y}" stroke="#ddd"/>')
            out.append(f'<text x="{x0 - 6}" y="{y + 4}" text-anchor="end">{10.0 ** e:g}</text>')
        for x in xs:
            out.append(f'<line x1="{px(x)}" x2="{px(x)}" y1="{bottom}" y2="{bottom + 4}" stroke="#888"/>')
            out.append(f'<text x="{px(x)}" y="{bottom + 17}" text-anchor="middle">{x}</text>')
        out.append(f'<text x="{x0 + pw / 2}" y="{H - 10}" text-anchor="middle">{xlabel}</text>')
        out.append(f'<text x="{x0 - 44}" y="{(top + bottom) / 2}" text-anchor="middle" '
                   f'transform="rotate(-90 {x0 - 44} {(top + bottom) / 2})">ms per epoch</text>')
        for k, colour in (("epoch_seconds", "#c0392b"), ("solver_floor_seconds", "#2471a3")):
            pts = " ".join(f"{px(r[key]):.1f},{py(r[k]):.1f}" for r in rows)
            out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
            for r in rows:
                out.append(f'<circle cx="{px(r[key]):.1f}" cy="{py(r[k]):.1f}" r="3" fill="{colour}"/>')
        for r in rows:
            out.append(f'<text x="{px(r[key]):.1f}" y="{py(r["epoch_seconds"]) - 8:.1f}" '
                       f'text-anchor="middle" fill="#c0392b">{r["floor_ratio"]:.2f}x</text>')
        out.append(f'<line x1="{x0 + 10}" x2="{x0 + 30}" y1="{top + 14}" y2="{top + 14}" stroke="#c0392b" stroke-width="2"/>')
        out.append(f'<text x="{x0 + 34}" y="{top + 18}">epoch (label: epoch / floor)</text>')
        out.append(f'<line x1="{x0 + 10}" x2="{x0 + 30}" y1="{top + 30}" y2="{top + 30}" stroke="#2471a3" stroke-width="2"/>')
        out.append(f'<text x="{x0 + 34}" y="{top + 34}">solver floor</text>')

    panel(M, ef["trend_d"], "d", "d (batch 10, 5 draws)", "sort epoch vs d")
    panel(2 * M + pw, ef["trend_draws"], "draws", "draws per example (d = 50, batch 10)",
          "sort epoch vs draws")
    out.append("</svg>")
    open(path, "w").write("\n".join(out) + "\n")


if os.path.exists(EF):
    ef = json.load(open(EF))
    md = open("docs/results.md").read()
    lo = min(x for r in ef["trend_d"] + ef["trend_draws"] for x in r["load"])
    hi = max(x for r in ef["trend_d"] + ef["trend_draws"] for x in r["load"])
    L = [f"`python3 bench/epoch_floor.py` ({ef['date'][:16].replace('T', ' ')} UTC, "
         f"{ef['rounds']} rounds, medians; 1-minute load average {lo:.1f}-{hi:.1f}; "
         f"commit {ef['git_commit'][:7]}). Each row is `dlm train --task sort --n D --draws K "
         "--seed 1 --epochs E --patience 0 --profile --json` (batch 10, learned sigma, "
         "2 threads; E in the JSON); the ratio is each run's own epoch / floor, its median and "
         "(in brackets) its lowest and highest value over the rounds.", "",
         "| d | epochs | epoch (ms) | solver floor (ms) | epoch / floor | solves / epoch | µs per solve | noise (ms) | other non-solve (ms) |",
         "|---|---|---|---|---|---|---|---|---|"]
    for r in ef["trend_d"]:
        noise = r["phases"]["noise"]
        other = r["epoch_seconds"] - r["solver_floor_seconds"] - noise
        L.append(f"| {r['d']} | {ef['epochs'][str(r['d'])]} | {ms(r['epoch_seconds'])} | "
                 f"{ms(r['solver_floor_seconds'])} | {spread(ef['raw']['sizes'][str(r['d'])])} | "
                 f"{r['solves_per_epoch']:.0f} | {r['seconds_per_solve'] * 1e6:.1f} | "
                 f"{ms(noise)} | {ms(max(other, 0.0))} |")
    L += ["", "| draws (d = 50) | epoch (ms) | solver floor (ms) | epoch / floor | solves / epoch | noise (ms) |",
          "|---|---|---|---|---|---|"]
    for r in ef["trend_draws"]:
        L.append(f"| {r['draws']} | {ms(r['epoch_seconds'])} | {ms(r['solver_floor_seconds'])} | "
                 f"{spread(ef['raw']['draws'][str(r['draws'])])} | {r['solves_per_epoch']:.0f} | "
                 f"{ms(r['phases']['noise'])} |")
    spp = ef["shortest_path_profile"]
    kn = ef["compare"]["knn"]["after"]
    spe = ef["compare"]["shortest_path"]["after"]["seconds_per_epoch"]
    L += ["", f"In the same run: the k-NN step (`dlm bench knn-step`: mlp 784-256-64, 100 queries "
          f"x 800 candidates, random MNIST-shaped data) took {ms(kn['step_seconds'])} ms against a "
          f"GEMM floor of {ms(kn['gemm_floor_seconds'])} ms ({kn['flops_per_step'] / 1e6:.0f} "
          f"Mflop at {kn['gemm_flops_per_second'] / 1e9:.1f} Gflop/s), step / floor "
          f"{kn['floor_ratio']:.2f}; the shortest-path SPO+ epoch (`dlm train --task shortest-path "
          f"--estimator spo+ --epochs 20`) {ms(spe)} ms, and with `--profile` "
          f"{ms(spp['epoch_seconds'])} ms against a solver floor of "
          f"{ms(spp['solver_floor_seconds'])} ms (epoch / floor {spp['floor_ratio']:.2f})."]
    md = replace_block(md, "epoch-floor-trend", "\n".join(L))
    svg_plot(ef, "docs/perf-trend.svg")
    BA = "docs/perf-before-after.json"
    ba = json.load(open(BA)) if os.path.exists(BA) else None
    c = ba["compare"] if ba else {"before_label": None}
    if c["before_label"]:
        L = [f"`python3 bench/epoch_floor.py --before BIN` ({ba['date'][:16].replace('T', ' ')} "
             f"UTC). Before: {c['before_label']}. After: commit {ba['git_commit'][:7]}. Both "
             f"binaries alternately in each of {ba['rounds']} rounds (medians; 1-minute load "
             f"{min(r['load'][0] for r in c['sort']):.1f}-{max(r['load'][1] for r in c['sort']):.1f}).",
             "", "| d | before: epoch (ms) | floor (ms) | epoch / floor | after: epoch (ms) | floor (ms) | epoch / floor |",
             "|---|---|---|---|---|---|---|"]
        for d in (25, 50, 100):
            b = next(r for r in c["sort"] if r["side"] == "before" and r["d"] == d)
            a = next(r for r in c["sort"] if r["side"] == "after" and r["d"] == d)
            raw = ba["raw"]["compare_sort"]
            L.append(f"| {d} | {ms(b['epoch_seconds'])} | {ms(b['solver_floor_seconds'])} | "
                     f"{spread(raw['before'][str(d)])} | {ms(a['epoch_seconds'])} | "
                     f"{ms(a['solver_floor_seconds'])} | {spread(raw['after'][str(d)])} |")
        L += ["", "| k-NN step (784-256-64, 100 x 800, `dlm bench knn-step`) | step (ms) | GEMM floor (ms) | step / floor | GEMM rate, 2 threads / 1 (Gflop/s) |",
              "|---|---|---|---|---|"]
        for side in ("before", "after"):
            k = c["knn"][side]
            L.append(f"| {side} | {ms(k['step_seconds'])} | {ms(k['gemm_floor_seconds'])} | "
                     f"{spread(ba['raw']['knn'][side])} | {k['gemm_flops_per_second'] / 1e9:.1f} / "
                     f"{k['gemm_flops_per_second_one_thread'] / 1e9:.1f} |")
        sp = c["shortest_path"]
        L += ["", "| shortest path, SPO+ (`dlm train --task shortest-path --estimator spo+ --epochs 20`) | ms per epoch |",
              "|---|---|",
              f"| before | {ms(sp['before']['seconds_per_epoch'])} |",
              f"| after | {ms(sp['after']['seconds_per_epoch'])} |"]
        md = replace_block(md, "epoch-floor-compare", "\n".join(L))
    open("docs/results.md", "w").write(md)
    print("epoch / floor tables and docs/perf-trend.svg written")
