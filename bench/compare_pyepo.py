#!/usr/bin/env python3
"""Side by side with PyEPO on its standard shortest-path benchmark (issue 11, item 4).

One command from a clean clone::

    python3 bench/compare_pyepo.py                 # 3 seeds x deg 1,2,4,6, 20 epochs
    python3 bench/compare_pyepo.py --quick         # smoke test: 1 seed, deg 4, 100/200, 3 epochs
    python3 bench/compare_pyepo.py --seeds 1,2,3 --deg 1,2,4,6 --epochs 20 --out results.json

What it does
============
1. **Environment.** Creates (or reuses) the virtual environment ``.venv-pyepo/`` in the
   repository root (git-ignored; ``--venv DIR`` to move it, ``--no-venv`` to use the running
   interpreter as it is) and installs the pinned packages of ``PINS`` below from PyPI with
   pip: ``pyepo``, ``torch`` (the default Linux wheel, which is the CUDA build with its
   ``nvidia-*`` libraries: about 60 s and 5.7 GB on a warm network, used on the CPU only) and
   the LP solver, by default ``gurobipy`` (its PyPI wheel carries a size-limited licence that
   needs no licence server; a 5x5 grid is 40 variables) or, with ``--solver ortools``, OR-Tools'
   GLOP. A marker file in the venv remembers what was installed, so a second run starts at
   once. The script then re-runs itself inside the venv.
2. **Data.** For every (deg, seed): PyEPO's own generator
   ``pyepo.data.shortestpath.genData(train + test, features, grid=(5, 5), deg, noise_width,
   seed=seed)`` (one call, so training and test share the matrix B); the first ``train`` rows
   are the training split, the remaining ``test`` rows the test split. Written to
   ``WORKDIR/sp_deg{deg}_seed{seed}_n{train}.npz`` with exactly the arrays ``x`` float64
   ``[train, p]``, ``c`` float64 ``[train, 40]``, ``x_test``, ``c_test`` (genData returns ``c``
   as float32; it is widened to float64 without change, so both sides see identical numbers),
   and a sidecar ``.json`` with the generator's arguments and the arc order. The ``.npz`` holds
   no other array, as dlm's data loaders refuse unknown array names.
3. **PyEPO.** ``nn.Linear(p, 40)`` (PyEPO's tutorial model) trained by Adam (lr ``--lr``,
   default 1e-2, PyEPO's tutorial value), batch 32, shuffled ``DataLoader``, the same epochs
   for every method, ``processes=1`` (single-process solves), ``torch.set_num_threads(1)`` and
   Gurobi ``Threads=1`` (``--threads``):

   - SPO+: ``pyepo.func.SPOPlus(optmodel)``, loss ``spop(cp, c, w, z)``;
   - DBB: ``pyepo.func.blackboxOpt(optmodel, lambd=20)`` with PyEPO's tutorial loss, the L1
     distance between the objective of the predicted path under the true cost and the true
     optimum: ``L1Loss((dbb(cp) * c).sum(1), z)``;
   - PFYL: ``pyepo.func.perturbedFenchelYoung(optmodel, n_samples=3, sigma=1.0, seed=seed)``
     (PyEPO's tutorial values), loss ``pfy(cp, w)``.

   Measured: normalized regret on the test split (``pyepo.metric.regret``: sum over test
   instances of ``c^T w*(c_hat) - z*(c)``, divided by the sum of ``|z*(c)|``), and training
   seconds per epoch: the wall time of the epoch loop only (batches, forward, solver calls,
   backward, Adam), divided by the epochs; data generation, PyEPO's ``optDataset``
   precomputation of the true solutions and the evaluation are timed separately and not
   included. Seeds: ``torch.manual_seed(seed)`` before the model is built (initialisation and
   shuffling) and PFYL's own ``seed``.
4. **dlm.** For every (deg, seed) and every dlm row (``DLM_ROWS``, or ``--dlm-row``) it runs,
   from the repository root::

       DLM train --task shortest-path --data FILE.npz --epochs N --batch 32 --seed S
                 --mu-lr LR --patience 0 --json --quiet  ROW-ARGS

   where DLM is ``--dlm PATH`` (default ``target/release/dlm``, built with
   ``cargo build --release -p dlm-cli`` when missing unless ``--no-build``) and ROW-ARGS are,
   by default:

   ====================  ===============================================================
   row                   ROW-ARGS
   ====================  ===============================================================
   SPO+                  ``--estimator spo+``
   DBB                   ``--estimator blackbox:lambda=20``
   PFYL                  ``--estimator fy --noise gaussian --sigma fixed:1 --draws 3``
   DLM (sigma fixed 1)   ``--estimator dlm --sigma fixed:1``
   DLM (sigma learned)   ``--estimator dlm --sigma learned``
   ====================  ===============================================================

   (``blackbox:lambda=20``, ``--draws`` and the sigma follow ``--dbb-lambda``,
   ``--pfyl-samples`` and ``--pfyl-sigma``.) It reads one JSON object from stdout with at least
   ``estimator``, ``epochs_run``, ``seconds_per_epoch`` and ``test.normalized_regret`` (same
   definition as PyEPO's). If the binary does not list ``shortest-path`` among the tasks of
   ``dlm train --help`` (or refuses the task), the dlm rows are skipped with a note and the
   exit status stays 0. Any other dlm failure is recorded in the output and makes the exit
   status 1.
5. **Output.** Markdown tables on stdout (normalized regret, mean +- sample standard deviation
   over seeds, per method and deg; seconds per epoch; the ratio PyEPO s/epoch / dlm s/epoch for
   the same method, from this run's means only), and a JSON file (``--out``, default
   ``WORKDIR/compare_pyepo.json``, plus the same tables as ``.md`` beside it) with the date,
   machine (nproc, CPU model, load average before and after), package versions, every setting
   and every single run. Nothing is carried over from earlier runs.

The arc order of ``c`` (PyEPO's ``shortestPathBase.arcs``): nodes ``v = row * 5 + col``; for
each row, first its 4 right arcs ``(v, v + 1)`` left to right, then (except after the last row)
its 5 down arcs ``(v, v + 5)`` left to right; 40 arcs, source node 0 (top left), sink node 24
(bottom right), minimising the total cost. The script checks this order against the solver on
every test split with a dynamic program over the DAG (``dp_check_max_abs_diff`` in the JSON).

Progress goes to stderr; only the tables go to stdout.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
INNER_ENV = "DLM_COMPARE_PYEPO_INNER"

# Versions verified with this script (Python 3.11, Linux x86_64).
PINS = {
    "pyepo": "2.2.7",
    "torch": "2.15.0",
    "numpy": "2.4.6",
}
SOLVER_PINS = {
    "gurobi": {"gurobipy": "13.0.3"},
    "ortools": {"ortools": "9.15.6755"},
}

GRID = (5, 5)
NUM_ARCS = (GRID[0] - 1) * GRID[1] + (GRID[1] - 1) * GRID[0]  # 40

# method key, PyEPO name, the dlm estimator that implements the same method
PYEPO_METHODS = [
    ("spo+", "SPO+", "spo+"),
    ("dbb", "DBB", "blackbox"),
    ("pfyl", "PFYL", "fy"),
]


def log(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def csv_ints(s: str) -> list[int]:
    try:
        return [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r}: expected comma-separated integers")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 1 seed, 1 deg (4), 100 train / 200 test, 3 epochs "
                         "(explicit options still win)")
    ap.add_argument("--seeds", type=csv_ints, help="seeds (default 1,2,3; quick: 1)")
    ap.add_argument("--deg", type=csv_ints, help="polynomial degrees (default 1,2,4,6; quick: 4)")
    ap.add_argument("--epochs", type=int, help="epochs for every method (default 20; quick: 3)")
    ap.add_argument("--train-size", type=int, help="training instances (default 1000; quick: 100)")
    ap.add_argument("--test-size", type=int, help="test instances (default 1000; quick: 200)")
    ap.add_argument("--features", type=int, default=5, help="features p (default %(default)s)")
    ap.add_argument("--noise-width", type=float, default=0.5,
                    help="half-width e of the multiplicative noise (default %(default)s)")
    ap.add_argument("--batch", type=int, default=32, help="batch size (default %(default)s)")
    ap.add_argument("--lr", type=float, default=1e-2,
                    help="Adam learning rate, both sides (default %(default)s)")
    ap.add_argument("--dbb-lambda", type=float, default=20.0, help="DBB lambda (default %(default)s)")
    ap.add_argument("--pfyl-samples", type=int, default=3,
                    help="PFYL perturbation samples (dlm: --draws) (default %(default)s)")
    ap.add_argument("--pfyl-sigma", type=float, default=1.0,
                    help="PFYL Gaussian noise scale (default %(default)s)")
    ap.add_argument("--methods", default="spo+,dbb,pfyl",
                    help="PyEPO methods to run, of spo+,dbb,pfyl (default %(default)s)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch and Gurobi threads on the PyEPO side (default %(default)s)")
    ap.add_argument("--solver", choices=sorted(SOLVER_PINS), default="gurobi",
                    help="PyEPO's LP backend (default %(default)s)")
    ap.add_argument("--workdir", default=os.path.join("target", "pyepo"),
                    help="data and output folder, relative to the repository root "
                         "(default %(default)s)")
    ap.add_argument("--out", help="JSON output (default WORKDIR/compare_pyepo.json)")
    ap.add_argument("--dlm", default=os.path.join("target", "release", "dlm"),
                    help="dlm binary (default %(default)s, relative to the repository root)")
    ap.add_argument("--no-build", action="store_true",
                    help="do not run cargo build when the dlm binary is missing")
    ap.add_argument("--dlm-row", action="append", metavar="LABEL::ARGS",
                    help="replace the default dlm rows; repeatable, e.g. "
                         "'DLM::--estimator dlm --sigma fixed:0.5' (LABEL of a PyEPO method, "
                         "SPO+/DBB/PFYL, pairs the row with it for the speed ratio)")
    ap.add_argument("--dlm-timeout", type=float, default=3600.0,
                    help="seconds allowed per dlm run (default %(default)s)")
    ap.add_argument("--skip-pyepo", action="store_true", help="only the dlm rows")
    ap.add_argument("--skip-dlm", action="store_true", help="only the PyEPO rows")
    ap.add_argument("--venv", default=".venv-pyepo",
                    help="virtual environment, relative to the repository root "
                         "(default %(default)s)")
    ap.add_argument("--no-venv", action="store_true",
                    help="use the running interpreter (it must have pyepo, torch and the solver)")
    a = ap.parse_args(argv)
    q = a.quick
    a.seeds = a.seeds or ([1] if q else [1, 2, 3])
    a.deg = a.deg or ([4] if q else [1, 2, 4, 6])
    a.epochs = a.epochs if a.epochs is not None else (3 if q else 20)
    a.train_size = a.train_size if a.train_size is not None else (100 if q else 1000)
    a.test_size = a.test_size if a.test_size is not None else (200 if q else 1000)
    a.methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    known = [m[0] for m in PYEPO_METHODS]
    for m in a.methods:
        if m not in known:
            ap.error(f"--methods: unknown method {m!r}; choose from {','.join(known)}")
    for name in ("epochs", "train_size", "test_size", "features", "batch", "pfyl_samples", "threads"):
        if getattr(a, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    for d in a.deg:
        if d < 1:
            ap.error("--deg: degrees must be >= 1")
    a.workdir = os.path.join(REPO, a.workdir)
    a.out = os.path.abspath(a.out) if a.out else os.path.join(a.workdir, "compare_pyepo.json")
    a.dlm = a.dlm if os.path.isabs(a.dlm) else os.path.join(REPO, a.dlm)
    a.dlm_rows = parse_dlm_rows(a, ap)
    return a


def default_dlm_rows(a) -> list[tuple[str, list[str]]]:
    lam = f"{a.dbb_lambda:g}"
    sig = f"{a.pfyl_sigma:g}"
    return [
        ("SPO+", ["--estimator", "spo+"]),
        ("DBB", ["--estimator", f"blackbox:lambda={lam}"]),
        ("PFYL", ["--estimator", "fy", "--noise", "gaussian", "--sigma", f"fixed:{sig}",
                  "--draws", str(a.pfyl_samples)]),
        ("DLM (sigma fixed 1)", ["--estimator", "dlm", "--sigma", "fixed:1"]),
        ("DLM (sigma learned)", ["--estimator", "dlm", "--sigma", "learned"]),
    ]


def parse_dlm_rows(a, ap):
    if not a.dlm_row:
        return default_dlm_rows(a)
    rows = []
    for spec in a.dlm_row:
        if "::" not in spec:
            ap.error(f"--dlm-row {spec!r}: expected LABEL::ARGS")
        label, args = spec.split("::", 1)
        rows.append((label.strip(), shlex.split(args)))
    return rows


# --------------------------------------------------------------------------------------------
# Environment (runs under the system python, standard library only)
# --------------------------------------------------------------------------------------------

def requirements(solver: str) -> list[str]:
    pins = dict(PINS)
    pins.update(SOLVER_PINS[solver])
    return [f"{k}=={v}" for k, v in sorted(pins.items())]


def ensure_venv_and_reexec(a, argv: list[str]) -> None:
    venv = a.venv if os.path.isabs(a.venv) else os.path.join(REPO, a.venv)
    py = os.path.join(venv, "bin", "python")
    reqs = requirements(a.solver)
    marker = os.path.join(venv, ".compare_pyepo_installed")
    t0 = time.perf_counter()
    if not os.path.exists(py):
        log(f"[env] creating {venv}")
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    have = set()
    if os.path.exists(marker):
        with open(marker) as f:
            have = {line.strip() for line in f if line.strip()}
    missing = [r for r in reqs if r not in have]
    installed_now = False
    if missing:
        log(f"[env] pip install {' '.join(reqs)}  (torch from PyPI brings the CUDA libraries: "
            "about 5-6 GB, a minute or more)")
        cmd = [py, "-m", "pip", "install", "--disable-pip-version-check"] + reqs
        r = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr)
        if r.returncode != 0:
            log(f"[env] pip install failed (exit {r.returncode}); command: {shlex.join(cmd)}")
            sys.exit(2)
        with open(marker, "w") as f:
            f.write("\n".join(sorted(have | set(reqs))) + "\n")
        installed_now = True
    setup_s = time.perf_counter() - t0
    log(f"[env] ready in {setup_s:.1f} s ({'installed' if installed_now else 'reused'})")
    env = dict(os.environ)
    env[INNER_ENV] = json.dumps({"venv": venv, "setup_seconds": setup_s,
                                 "installed_now": installed_now})
    os.execve(py, [py, os.path.abspath(__file__)] + argv, env)


# --------------------------------------------------------------------------------------------
# Machine and versions
# --------------------------------------------------------------------------------------------

def machine_info() -> dict:
    info = {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    info["mem_total_kb"] = int(line.split()[1])
                    break
    except OSError:
        pass
    return info


def git_commit() -> str | None:
    try:
        r = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True)
        if r.returncode == 0:
            dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain"],
                                   capture_output=True, text=True).stdout.strip()
            return r.stdout.strip() + ("-dirty" if dirty else "")
    except OSError:
        pass
    return None


def package_versions(solver: str) -> dict:
    from importlib import metadata

    names = ["pyepo", "torch", "numpy", "scipy"] + list(SOLVER_PINS[solver])
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

def grid_arcs(grid=GRID) -> list[tuple[int, int]]:
    """PyEPO's arc order (pyepo.model.utils._get_grid_arcs), restated."""
    arcs = []
    for i in range(grid[0]):
        for j in range(grid[1] - 1):
            v = i * grid[1] + j
            arcs.append((v, v + 1))
        if i == grid[0] - 1:
            continue
        for j in range(grid[1]):
            v = i * grid[1] + j
            arcs.append((v, v + grid[1]))
    return arcs


def dp_shortest(c, grid=GRID):
    """Shortest path costs from node 0 to the last node of the right/down grid DAG, for every
    row of c [N, arcs] in PyEPO's arc order: an independent check of that order."""
    import numpy as np

    idx = {a: k for k, a in enumerate(grid_arcs(grid))}
    rows, cols = grid
    n = c.shape[0]
    dist = np.full((n, rows, cols), np.inf)
    dist[:, 0, 0] = 0.0
    for i in range(rows):
        for j in range(cols):
            v = i * cols + j
            best = dist[:, i, j]
            if j > 0:
                best = np.minimum(best, dist[:, i, j - 1] + c[:, idx[(v - 1, v)]])
            if i > 0:
                best = np.minimum(best, dist[:, i - 1, j] + c[:, idx[(v - cols, v)]])
            dist[:, i, j] = best
    return dist[:, rows - 1, cols - 1]


def make_data(a, deg: int, seed: int) -> dict:
    import numpy as np
    import pyepo

    os.makedirs(a.workdir, exist_ok=True)
    stem = f"sp_deg{deg}_seed{seed}_n{a.train_size}_t{a.test_size}_p{a.features}_e{a.noise_width:g}"
    path = os.path.join(a.workdir, stem + ".npz")
    t0 = time.perf_counter()
    x, c = pyepo.data.shortestpath.genData(
        a.train_size + a.test_size, a.features, GRID, deg=deg, noise_width=a.noise_width, seed=seed
    )
    gen_s = time.perf_counter() - t0
    x = np.asarray(x, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    assert c.shape[1] == NUM_ARCS, c.shape
    n = a.train_size
    arrays = {"x": x[:n], "c": c[:n], "x_test": x[n:], "c_test": c[n:]}
    np.savez(path, **arrays)
    meta = {
        "generator": "pyepo.data.shortestpath.genData",
        "args": {"num_data": a.train_size + a.test_size, "num_features": a.features,
                 "grid": list(GRID), "deg": deg, "noise_width": a.noise_width, "seed": seed},
        "split": f"first {n} rows train, last {a.test_size} rows test",
        "arrays": {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in arrays.items()},
        "arcs": grid_arcs(),
        "source": 0,
        "sink": GRID[0] * GRID[1] - 1,
        "sense": "minimise c . w",
    }
    with open(os.path.join(a.workdir, stem + ".json"), "w") as f:
        json.dump(meta, f, indent=1)
    return {"path": path, "deg": deg, "seed": seed, "gen_seconds": gen_s, **arrays}


# --------------------------------------------------------------------------------------------
# PyEPO side
# --------------------------------------------------------------------------------------------

def build_optmodel(a):
    if a.solver == "gurobi":
        from pyepo.model.grb import shortestPathModel

        m = shortestPathModel(GRID)
        m._model.Params.Threads = a.threads
        return m
    from pyepo.model.ort import shortestPathModel

    return shortestPathModel(GRID)


def run_pyepo(a, data: dict, optmodel, method: str) -> dict:
    import contextlib

    import numpy as np
    import pyepo
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    deg, seed = data["deg"], data["seed"]
    with contextlib.redirect_stdout(sys.stderr):  # PyEPO prints progress on stdout
        t0 = time.perf_counter()
        ds_train = pyepo.data.dataset.optDataset(optmodel, data["x"], data["c"])
        ds_test = pyepo.data.dataset.optDataset(optmodel, data["x_test"], data["c_test"])
        prep_s = time.perf_counter() - t0
    dp = dp_shortest(data["c_test"])
    z_test = np.asarray(ds_test.objs, dtype=np.float64).reshape(-1)
    dp_diff = float(np.max(np.abs(dp - z_test)))

    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    loader_train = DataLoader(ds_train, batch_size=a.batch, shuffle=True, generator=g)
    loader_test = DataLoader(ds_test, batch_size=a.batch, shuffle=False)
    reg = nn.Linear(a.features, NUM_ARCS)
    opt = torch.optim.Adam(reg.parameters(), lr=a.lr)

    if method == "spo+":
        spop = pyepo.func.SPOPlus(optmodel, processes=1)

        def loss_fn(cp, c, w, z):
            return spop(cp, c, w, z)
    elif method == "dbb":
        dbb = pyepo.func.blackboxOpt(optmodel, lambd=a.dbb_lambda, processes=1)
        l1 = nn.L1Loss()

        def loss_fn(cp, c, w, z):
            wp = dbb(cp)
            zp = (wp * c).sum(1).view(-1, 1)
            return l1(zp, z)
    elif method == "pfyl":
        pfy = pyepo.func.perturbedFenchelYoung(
            optmodel, n_samples=a.pfyl_samples, sigma=a.pfyl_sigma, processes=1, seed=seed
        )

        def loss_fn(cp, c, w, z):
            return pfy(cp, w)
    else:
        raise ValueError(method)

    reg.train()
    losses = []
    with contextlib.redirect_stdout(sys.stderr):
        t0 = time.perf_counter()
        c0 = time.process_time()
        for _ in range(a.epochs):
            tot, nb = 0.0, 0
            for x, c, w, z in loader_train:
                cp = reg(x)
                loss = loss_fn(cp, c, w, z)
                opt.zero_grad()
                loss.backward()
                opt.step()
                tot += loss.item()
                nb += 1
            losses.append(tot / max(nb, 1))
        train_s = time.perf_counter() - t0
        train_cpu = time.process_time() - c0
        t0 = time.perf_counter()
        regret = float(pyepo.metric.regret(reg, optmodel, loader_test))
        eval_s = time.perf_counter() - t0
    return {
        "side": "pyepo",
        "method": dict((k, n) for k, n, _ in PYEPO_METHODS)[method],
        "deg": deg,
        "seed": seed,
        "normalized_regret": regret,
        "seconds_per_epoch": train_s / a.epochs,
        "train_seconds": train_s,
        "cpu_seconds_per_epoch": train_cpu / a.epochs,
        "epochs_run": a.epochs,
        "train_loss_per_epoch": losses,
        "dataset_precompute_seconds": prep_s,
        "eval_seconds": eval_s,
        "dp_check_max_abs_diff": dp_diff,
    }


# --------------------------------------------------------------------------------------------
# dlm side
# --------------------------------------------------------------------------------------------

class DlmUnsupported(Exception):
    pass


def ensure_dlm(a) -> tuple[str | None, str]:
    """Returns (binary or None, note)."""
    if not os.path.exists(a.dlm):
        if a.no_build:
            return None, f"dlm binary {a.dlm} not found and --no-build given: dlm rows skipped"
        cargo = shutil.which("cargo")
        if cargo is None:
            return None, "no dlm binary and no cargo on PATH: dlm rows skipped"
        cmd = [cargo, "build", "--release", "-p", "dlm-cli"]
        log(f"[dlm] {a.dlm} missing: {shlex.join(cmd)}")
        r = subprocess.run(cmd, cwd=REPO, stdout=sys.stderr, stderr=sys.stderr)
        if r.returncode != 0 or not os.path.exists(a.dlm):
            raise RuntimeError(f"cargo build failed (exit {r.returncode}); dlm rows not run")
    r = subprocess.run([a.dlm, "train", "--help"], capture_output=True, text=True)
    helptext = r.stdout + r.stderr
    if r.returncode != 0:
        raise RuntimeError(f"`{a.dlm} train --help` failed (exit {r.returncode}): {helptext[-500:]}")
    if "shortest-path" not in helptext:
        return None, (f"{a.dlm} does not support `dlm train --task shortest-path` yet (not among "
                      "the tasks of `dlm train --help`): dlm rows skipped")
    return a.dlm, ""


def dlm_version(binary: str) -> str | None:
    try:
        r = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
        return r.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def dlm_command(a, binary: str, data_path: str, seed: int, row_args: list[str]) -> list[str]:
    return [binary, "train", "--task", "shortest-path", "--data", data_path,
            "--epochs", str(a.epochs), "--batch", str(a.batch), "--seed", str(seed),
            "--mu-lr", f"{a.lr:g}", "--patience", "0", "--json", "--quiet"] + row_args


def parse_json_out(text: str) -> dict:
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    i = text.find("{")
    j = text.rfind("}")
    if i >= 0 and j > i:
        return json.loads(text[i:j + 1])
    raise ValueError("no JSON object on stdout")


def run_dlm(a, binary: str, data: dict, label: str, row_args: list[str]) -> dict:
    cmd = dlm_command(a, binary, data["path"], data["seed"], row_args)
    rec = {"side": "dlm", "method": label, "deg": data["deg"], "seed": data["seed"],
           "command": shlex.join(cmd)}
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=a.dlm_timeout)
    except subprocess.TimeoutExpired:
        rec["error"] = f"timed out after {a.dlm_timeout:g} s"
        return rec
    rec["wall_seconds"] = time.perf_counter() - t0
    if r.returncode != 0:
        err = (r.stderr or r.stdout).strip()
        low = err.lower()
        if "shortest-path" in low and ("invalid value" in low or "possible values" in low
                                       or "unknown task" in low or "unsupported" in low):
            raise DlmUnsupported(err.splitlines()[0] if err else "task refused")
        rec["error"] = f"exit {r.returncode}: {err[-800:]}"
        return rec
    try:
        j = parse_json_out(r.stdout)
        rec["estimator"] = j["estimator"]
        rec["epochs_run"] = int(j["epochs_run"])
        rec["seconds_per_epoch"] = float(j["seconds_per_epoch"])
        rec["normalized_regret"] = float(j["test"]["normalized_regret"])
    except (ValueError, KeyError, TypeError) as e:
        rec["error"] = f"unexpected output ({type(e).__name__}: {e}): {r.stdout[-500:]}"
        return rec
    for k in ("n_train", "n_test", "sigma_final", "train_seconds"):
        if k in j:
            rec[k] = j[k]
    if rec["epochs_run"] != a.epochs:
        rec["warning"] = f"epochs_run {rec['epochs_run']} != --epochs {a.epochs}"
    for k, want in (("n_train", a.train_size), ("n_test", a.test_size)):
        if k in j and j[k] != want:
            rec["warning"] = (rec.get("warning", "") + f"; {k} {j[k]} != {want}").lstrip("; ")
    return rec


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------

def summarise(runs: list[dict]) -> list[dict]:
    groups: dict = {}
    for r in runs:
        if "error" in r:
            continue
        groups.setdefault((r["side"], r["method"], r["deg"]), []).append(r)
    out = []
    for (side, method, deg), rs in groups.items():
        reg = [r["normalized_regret"] for r in rs]
        spe = [r["seconds_per_epoch"] for r in rs]
        out.append({
            "side": side, "method": method, "deg": deg, "n_seeds": len(rs),
            "seeds": [r["seed"] for r in rs],
            "regret_mean": statistics.fmean(reg),
            "regret_std": statistics.stdev(reg) if len(reg) > 1 else None,
            "seconds_per_epoch_mean": statistics.fmean(spe),
            "seconds_per_epoch_std": statistics.stdev(spe) if len(spe) > 1 else None,
        })
        cpu = [r["cpu_seconds_per_epoch"] for r in rs if "cpu_seconds_per_epoch" in r]
        if len(cpu) == len(rs):
            out[-1]["cpu_seconds_per_epoch_mean"] = statistics.fmean(cpu)
    return out


def ratios(summary: list[dict]) -> list[dict]:
    """PyEPO s/epoch over dlm s/epoch for the same method and deg, from this run only."""
    by = {(s["side"], s["method"], s["deg"]): s for s in summary}
    out = []
    for (side, method, deg), s in by.items():
        if side != "pyepo":
            continue
        d = by.get(("dlm", method, deg))
        if d is None or d["seconds_per_epoch_mean"] <= 0:
            continue
        out.append({"method": method, "deg": deg,
                    "pyepo_seconds_per_epoch": s["seconds_per_epoch_mean"],
                    "dlm_seconds_per_epoch": d["seconds_per_epoch_mean"],
                    "pyepo_over_dlm": s["seconds_per_epoch_mean"] / d["seconds_per_epoch_mean"]})
    return out


def fmt_regret(s) -> str:
    if s is None:
        return "–"
    m = 100 * s["regret_mean"]
    if s["regret_std"] is None:
        return f"{m:.2f}%"
    return f"{m:.2f} ± {100 * s['regret_std']:.2f}%"


def fmt_time(s) -> str:
    if s is None:
        return "–"
    v = s["seconds_per_epoch_mean"]
    return f"{v:.3g}" if v >= 1e-3 else f"{v:.2e}"


def markdown(a, summary, rat, row_order, header: str) -> str:
    degs = a.deg
    by = {(s["side"], s["method"], s["deg"]): s for s in summary}
    n = len(a.seeds)
    lines = [header, "",
             f"Normalized test regret, mean ± sample std over {n} seed(s) "
             f"({a.train_size} train / {a.test_size} test, {a.epochs} epochs):", "",
             "| method | implementation | " + " | ".join(f"deg {d}" for d in degs) + " |",
             "|---|---|" + "---|" * len(degs)]
    for side, method in row_order:
        impl = "PyEPO" if side == "pyepo" else "dlm"
        lines.append(f"| {method} | {impl} | "
                     + " | ".join(fmt_regret(by.get((side, method, d))) for d in degs) + " |")
    lines += ["", "Training seconds per epoch (wall time of the epoch loop, mean over seeds):", "",
              "| method | implementation | " + " | ".join(f"deg {d}" for d in degs) + " |",
              "|---|---|" + "---|" * len(degs)]
    for side, method in row_order:
        impl = "PyEPO" if side == "pyepo" else "dlm"
        lines.append(f"| {method} | {impl} | "
                     + " | ".join(fmt_time(by.get((side, method, d))) for d in degs) + " |")
    cpu_rows = [(side, m) for side, m in row_order
                if any("cpu_seconds_per_epoch_mean" in by.get((side, m, d), {}) for d in degs)]
    if cpu_rows:
        lines += ["", "Process CPU seconds per epoch of the same loops (less sensitive to other "
                  "load on the machine than wall time):", "",
                  "| method | implementation | " + " | ".join(f"deg {d}" for d in degs) + " |",
                  "|---|---|" + "---|" * len(degs)]
        for side, method in cpu_rows:
            cells = []
            for d in degs:
                v = by.get((side, method, d), {}).get("cpu_seconds_per_epoch_mean")
                cells.append("–" if v is None else f"{v:.3g}")
            lines.append(f"| {method} | {'PyEPO' if side == 'pyepo' else 'dlm'} | "
                         + " | ".join(cells) + " |")
    if rat:
        lines += ["", "PyEPO s/epoch ÷ dlm s/epoch, same method (this run):", "",
                  "| method | " + " | ".join(f"deg {d}" for d in degs) + " |",
                  "|---|" + "---|" * len(degs)]
        rb = {(r["method"], r["deg"]): r for r in rat}
        for method in dict.fromkeys(r["method"] for r in rat):
            lines.append(f"| {method} | " + " | ".join(
                f"{rb[(method, d)]['pyepo_over_dlm']:.0f}x" if (method, d) in rb else "–"
                for d in degs) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------

def inner_main(a, argv, env_info: dict) -> int:
    # Only the tables go to stdout: the libraries' own messages (Gurobi's licence banner is
    # written by its C library) are sent to stderr at the file-descriptor level.
    sys.stdout.flush()
    real_stdout = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    try:
        return _inner_main(a, argv, env_info, real_stdout)
    finally:
        real_stdout.flush()


def _inner_main(a, argv, env_info: dict, out) -> int:
    import numpy as np  # noqa: F401  (fail early if the environment is incomplete)
    import torch

    torch.set_num_threads(a.threads)
    try:
        torch.set_num_interop_threads(a.threads)
    except RuntimeError:
        pass
    started = _dt.datetime.now().astimezone()
    load0 = os.getloadavg()
    log(f"[run] seeds {a.seeds}, deg {a.deg}, {a.train_size} train / {a.test_size} test, "
        f"{a.epochs} epochs, batch {a.batch}, lr {a.lr:g}, solver {a.solver}, threads {a.threads}")
    datasets = []
    for deg in a.deg:
        for seed in a.seeds:
            datasets.append(make_data(a, deg, seed))
    log(f"[data] {len(datasets)} file(s) in {a.workdir}")

    runs: list[dict] = []
    t_pyepo = time.perf_counter()
    if not a.skip_pyepo:
        optmodel = build_optmodel(a)
        for d in datasets:
            for m in a.methods:
                r = run_pyepo(a, d, optmodel, m)
                runs.append(r)
                log(f"[pyepo] deg {d['deg']} seed {d['seed']} {r['method']:5s}: regret "
                    f"{100 * r['normalized_regret']:.2f}%, {r['seconds_per_epoch']:.3f} s/epoch "
                    f"(dp check {r['dp_check_max_abs_diff']:.1e})")
    pyepo_wall = time.perf_counter() - t_pyepo

    failed = False
    dlm_note = ""
    dlm_bin = None
    dlm_ver = None
    t_dlm = time.perf_counter()
    if a.skip_dlm:
        dlm_note = "--skip-dlm: dlm rows not run"
    else:
        try:
            dlm_bin, dlm_note = ensure_dlm(a)
        except RuntimeError as e:
            dlm_note = str(e)
            failed = True
        if dlm_bin:
            dlm_ver = dlm_version(dlm_bin)
            try:
                for d in datasets:
                    for label, row_args in a.dlm_rows:
                        r = run_dlm(a, dlm_bin, d, label, row_args)
                        runs.append(r)
                        if "error" in r:
                            failed = True
                            log(f"[dlm] deg {d['deg']} seed {d['seed']} {label}: FAILED {r['error']}"
                                f"\n      command: {r['command']}")
                        else:
                            log(f"[dlm] deg {d['deg']} seed {d['seed']} {label}: regret "
                                f"{100 * r['normalized_regret']:.2f}%, "
                                f"{r['seconds_per_epoch']:.2e} s/epoch"
                                + (f" ({r['warning']})" if "warning" in r else ""))
            except DlmUnsupported as e:
                runs = [r for r in runs if r["side"] != "dlm"]
                dlm_note = (f"{dlm_bin} refuses `--task shortest-path` ({e}): dlm rows skipped")
    dlm_wall = time.perf_counter() - t_dlm
    if dlm_note:
        log(f"[dlm] NOTE: {dlm_note}")

    summary = summarise(runs)
    rat = ratios(summary)
    row_order = []
    for k, name, _ in PYEPO_METHODS:
        if k in a.methods and not a.skip_pyepo:
            row_order.append(("pyepo", name))
        if any(lbl == name for lbl, _ in a.dlm_rows) and any(
                r["side"] == "dlm" for r in runs):
            row_order.append(("dlm", name))
    if any(r["side"] == "dlm" for r in runs):
        for lbl, _ in a.dlm_rows:
            if ("dlm", lbl) not in row_order:
                row_order.append(("dlm", lbl))

    finished = _dt.datetime.now().astimezone()
    mach = machine_info()
    mach["loadavg_start"] = list(load0)
    mach["loadavg_end"] = list(os.getloadavg())
    versions = package_versions(a.solver)
    versions["dlm"] = dlm_ver
    header = (f"compare_pyepo.py, {started.strftime('%Y-%m-%d %H:%M %Z')}, "
              f"{mach.get('cpu_model', '?')} ({mach['nproc']} CPUs), "
              + ", ".join(f"{k} {v}" for k, v in versions.items() if v))
    md = markdown(a, summary, rat, row_order, header)
    if dlm_note:
        md += f"\nNote: {dlm_note}\n"
    errors = [r for r in runs if "error" in r]
    if errors:
        md += f"\n{len(errors)} dlm run(s) failed; see `runs[].error` in the JSON.\n"

    dp_diffs = [r["dp_check_max_abs_diff"] for r in runs if "dp_check_max_abs_diff" in r]
    result = {
        "schema": "dlm-bench-compare-pyepo/1",
        "date": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "command": shlex.join([os.path.relpath(os.path.abspath(__file__), REPO)] + argv),
        "git_commit": git_commit(),
        "machine": mach,
        "versions": versions,
        "environment": {**env_info, "interpreter": sys.executable},
        "settings": {
            "grid": list(GRID), "arcs": NUM_ARCS, "features": a.features,
            "train_size": a.train_size, "test_size": a.test_size,
            "noise_width": a.noise_width, "degs": a.deg, "seeds": a.seeds,
            "epochs": a.epochs, "batch": a.batch, "optimizer": "Adam", "lr": a.lr,
            "model": f"torch.nn.Linear({a.features}, {NUM_ARCS}) (with bias)",
            "pyepo_methods": {
                "SPO+": "pyepo.func.SPOPlus(optmodel, processes=1); loss spop(cp, c, w, z)",
                "DBB": f"pyepo.func.blackboxOpt(optmodel, lambd={a.dbb_lambda:g}, processes=1); "
                       "loss L1Loss((dbb(cp) * c).sum(1), z)",
                "PFYL": f"pyepo.func.perturbedFenchelYoung(optmodel, n_samples={a.pfyl_samples}, "
                        f"sigma={a.pfyl_sigma:g}, processes=1, seed=SEED); loss pfy(cp, w)",
            },
            "pyepo_methods_run": [n for k, n, _ in PYEPO_METHODS if k in a.methods and not a.skip_pyepo],
            "solver": a.solver, "threads": a.threads,
            "torch_threads": torch.get_num_threads(),
            "timing": "seconds_per_epoch = wall time of the epoch loop / epochs; excludes data "
                      "generation, optDataset precomputation and evaluation",
            "regret": "pyepo.metric.regret: sum(c.w*(c_hat) - z*(c)) / sum(|z*(c)|) on the test split",
            "std": "sample standard deviation over seeds (n - 1)",
            "dlm_binary": a.dlm,
            "dlm_common_args": dlm_command(a, "DLM", "FILE.npz", 0, [])[1:],
            "dlm_rows": [{"label": lbl, "args": args} for lbl, args in a.dlm_rows],
            "workdir": a.workdir,
        },
        "data_files": [d["path"] for d in datasets],
        "dp_check_max_abs_diff": max(dp_diffs) if dp_diffs else None,
        "pyepo_wall_seconds": pyepo_wall,
        "dlm_wall_seconds": dlm_wall,
        "dlm_note": dlm_note or None,
        "runs": runs,
        "summary": summary,
        "ratios": rat,
        "markdown": md,
    }
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.splitext(a.out)[0] + ".md", "w") as f:
        f.write(md)
    out.write(md)
    out.flush()
    log(f"[out] {a.out}")
    if dp_diffs and max(dp_diffs) > 1e-4:
        log(f"[check] FAILED: dynamic program and solver disagree on z* by {max(dp_diffs):.2e}")
        return 1
    return 1 if failed else 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = parse_args(argv)
    env_raw = os.environ.get(INNER_ENV)
    if env_raw is None and not a.no_venv:
        ensure_venv_and_reexec(a, argv)  # does not return
    env_info = json.loads(env_raw) if env_raw else {"venv": None}
    return inner_main(a, argv, env_info)


if __name__ == "__main__":
    sys.exit(main())
