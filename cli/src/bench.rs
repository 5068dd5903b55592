//! `dlm bench`: solver speed, single solves and parallel batches.

use crate::common::{num, parse_list, print_json, read_array};
use clap::{Args, Subcommand};
use dlm_core::rng::{open01, rng_for, Stream};
use dlm_core::{DlmError, Registry, Result, Spec, StructuredArgmax};
use ndarray::{ArrayD, Axis, IxDyn};
use rayon::prelude::*;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Options of `dlm bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(Subcommand, Debug)]
enum BenchWhat {
    /// Matching on uniform [0,1) matrices: us per single solve and parallel batch throughput.
    Matching(MatchingArgs),
    /// Top-k selection on uniform [0,1) vectors.
    Topk(TopkArgs),
    /// Solve every nN.npy ([R, N, N] float64) in DIR with our LAPJV (for bench/compare_lap.py).
    LapFiles(LapFilesArgs),
    /// k-NN training steps on random MNIST-shaped data against their matrix-multiply floor:
    /// the network's and the distance matrix's flops at the GEMM rate measured in the same run.
    KnnStep(KnnStepArgs),
}

#[derive(Args, Debug)]
struct KnnStepArgs {
    /// Layer widths of the mlp embedding (input first).
    #[arg(long, default_value = "784-256-64")]
    sizes: String,
    /// Queries per step.
    #[arg(long, default_value_t = 100)]
    queries: usize,
    /// Candidates per step.
    #[arg(long, default_value_t = 800)]
    candidates: usize,
    /// Steps per epoch (the random training set has steps x queries images).
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Epochs measured (after one epoch of warm-up).
    #[arg(long, default_value_t = 3)]
    epochs: u64,
    /// k of the top-k structure.
    #[arg(long, default_value_t = 5)]
    k: usize,
    /// Seed of the data, the network and the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct MatchingArgs {
    /// Matrix sizes.
    #[arg(long, default_value = "5,10,50,100,200")]
    n: String,
    /// Algorithms (matching:algo=...).
    #[arg(long, default_value = "lapjv,km")]
    algos: String,
    /// Thread counts for the batch measurement.
    #[arg(long, default_value = "1,2")]
    thread_counts: String,
    /// Minimum seconds spent timing each configuration.
    #[arg(long, default_value_t = 0.5)]
    seconds: f64,
    /// Seed of the matrices.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print a JSON array.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct TopkArgs {
    /// Vector lengths m.
    #[arg(long, default_value = "100,800,10000")]
    m: String,
    /// k.
    #[arg(long, default_value_t = 9)]
    k: usize,
    /// Thread counts for the batch measurement.
    #[arg(long, default_value = "1,2")]
    thread_counts: String,
    /// Minimum seconds per configuration.
    #[arg(long, default_value_t = 0.5)]
    seconds: f64,
    /// Print a JSON array.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct LapFilesArgs {
    /// Directory with nN.npy files.
    dir: PathBuf,
    /// Repetitions over each file's matrices (median reported).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Print JSON (always on; kept for symmetry).
    #[arg(long)]
    json: bool,
}

/// Largest matrix size of `dlm bench matching`.
const MAX_BENCH_N: usize = 1024;

/// Longest vector of `dlm bench topk`.
const MAX_BENCH_M: usize = 1 << 18;

fn check_timing(seconds: f64, threads: &[usize]) -> Result<()> {
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 3600.0) {
        return Err(DlmError::invalid(
            "--seconds",
            format!("{seconds}: give a duration in (0, 3600]"),
        ));
    }
    if threads.is_empty() || threads.contains(&0) {
        return Err(DlmError::invalid(
            "--thread-counts",
            "give thread counts of at least 1, e.g. 1,2",
        ));
    }
    Ok(())
}

pub fn bench(reg: &Registry, a: &BenchArgs) -> Result<ExitCode> {
    match &a.what {
        BenchWhat::Matching(m) => bench_matching(reg, m),
        BenchWhat::Topk(t) => bench_topk(reg, t),
        BenchWhat::LapFiles(l) => bench_lap_files(reg, l),
        BenchWhat::KnnStep(k) => bench_knn_step(reg, k),
    }
}

fn problems(count: usize, shape: &[usize], seed: u64, tag: u64) -> Vec<ArrayD<f64>> {
    (0..count)
        .map(|i| {
            let mut rng = rng_for(seed, Stream::Other, &[tag, i as u64]);
            ArrayD::from_shape_fn(IxDyn(shape), |_| open01(&mut rng))
        })
        .collect()
}

/// Median microseconds per solve, cycling through `probs` for at least `seconds`.
fn time_single(s: &dyn StructuredArgmax, probs: &[ArrayD<f64>], seconds: f64) -> Result<f64> {
    let mut out = Vec::new();
    for p in probs.iter().take(3) {
        s.argmax(p.view(), &mut out)?; // warm-up
    }
    let mut samples = Vec::new();
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed().as_secs_f64() < seconds || samples.len() < 5 {
        let t = Instant::now();
        s.argmax(probs[i % probs.len()].view(), &mut out)?;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
        i += 1;
        if samples.len() >= 200_000 {
            break;
        }
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

/// Solves per second of a batch solved in parallel on a pool of `threads` threads.
fn time_batch(
    s: &dyn StructuredArgmax,
    probs: &[ArrayD<f64>],
    threads: usize,
    seconds: f64,
) -> Result<f64> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| DlmError::invalid("--threads", e.to_string()))?;
    pool.install(|| -> Result<f64> {
        let run = || -> Result<()> {
            probs
                .par_iter()
                .try_for_each_init(Vec::new, |out, p| s.argmax(p.view(), out))
        };
        run()?;
        let start = Instant::now();
        let mut solves = 0usize;
        while start.elapsed().as_secs_f64() < seconds || solves == 0 {
            run()?;
            solves += probs.len();
        }
        Ok(solves as f64 / start.elapsed().as_secs_f64())
    })
}

fn bench_matching(reg: &Registry, a: &MatchingArgs) -> Result<ExitCode> {
    let ns: Vec<usize> = parse_list(&a.n, "--n")?;
    let threads: Vec<usize> = parse_list(&a.thread_counts, "--thread-counts")?;
    check_timing(a.seconds, &threads)?;
    let mut rows = Vec::new();
    for algo in a.algos.split(',').map(str::trim) {
        let s = reg.structure(&Spec::named("matching").with("algo", algo))?;
        for &n in &ns {
            if n == 0 {
                return Err(DlmError::invalid("--n", "sizes must be at least 1"));
            }
            dlm_core::limits::at_most(
                "--n",
                n,
                MAX_BENCH_N,
                "the benchmark holds at least 96 random n x n matrices, 800 MB at n = 1024",
            )?;
            let single = problems(32, &[n, n], a.seed, n as u64);
            let us = time_single(s.as_ref(), &single, a.seconds)?;
            // At least ~100 us of work per batch even for tiny n, so that the fork/join cost
            // of the pool (a few us) does not dominate (819 problems at n = 5), and at least 64
            // so that two threads get equal shares.
            let size = (16384 / (n * n)).max(4096 / n).clamp(64, 1024);
            let batch = problems(size, &[n, n], a.seed, 1000 + n as u64);
            for &t in &threads {
                let per_sec = time_batch(s.as_ref(), &batch, t, a.seconds)?;
                let row = json!({
                    "n": n, "algo": algo, "threads": t,
                    "us_per_solve": num(us),
                    "batch_solves_per_sec": num(per_sec),
                    "batch_size": batch.len(),
                });
                if !a.json {
                    eprintln!(
                        "matching n={n:<4} algo={algo:<6} threads={t}: {us:>10.2} us/solve, {per_sec:>12.0} solves/s in batches of {}",
                        batch.len()
                    );
                }
                rows.push(row);
            }
        }
    }
    if a.json {
        print_json(&json!(rows));
    }
    Ok(ExitCode::SUCCESS)
}

fn bench_topk(reg: &Registry, a: &TopkArgs) -> Result<ExitCode> {
    let ms: Vec<usize> = parse_list(&a.m, "--m")?;
    let threads: Vec<usize> = parse_list(&a.thread_counts, "--thread-counts")?;
    check_timing(a.seconds, &threads)?;
    let s = reg.structure(&Spec::named("topk").with("k", a.k))?;
    let mut rows = Vec::new();
    for &m in &ms {
        dlm_core::limits::at_most(
            "--m",
            m,
            MAX_BENCH_M,
            "the benchmark holds 288 random vectors of length m, 600 MB at the limit",
        )?;
        let single = problems(32, &[m], 0, m as u64);
        let us = time_single(s.as_ref(), &single, a.seconds)?;
        let batch = problems(256, &[m], 0, 7000 + m as u64);
        for &t in &threads {
            let per_sec = time_batch(s.as_ref(), &batch, t, a.seconds)?;
            if !a.json {
                eprintln!(
                    "topk m={m:<6} k={} threads={t}: {us:>9.3} us/solve, {per_sec:>12.0} solves/s",
                    a.k
                );
            }
            rows.push(json!({"m": m, "k": a.k, "threads": t, "us_per_solve": num(us), "batch_solves_per_sec": num(per_sec)}));
        }
    }
    if a.json {
        print_json(&json!(rows));
    }
    Ok(ExitCode::SUCCESS)
}

fn bench_lap_files(reg: &Registry, a: &LapFilesArgs) -> Result<ExitCode> {
    let s = reg.structure(&Spec::named("matching"))?;
    let mut files: Vec<(usize, PathBuf)> = std::fs::read_dir(&a.dir)
        .map_err(|e| DlmError::io("reading", &a.dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let stem = p.file_stem()?.to_str()?.strip_prefix('n')?.parse().ok()?;
            (p.extension()? == "npy").then_some((stem, p))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(DlmError::Empty {
            what: format!("directory {}", a.dir.display()),
            hint: "it needs files named nN.npy holding [R, N, N] float64 arrays".into(),
        });
    }
    let mut rows = Vec::new();
    for (n, path) in files {
        let arr = read_array(&path)?;
        if arr.ndim() != 3 || arr.shape()[1] != n || arr.shape()[2] != n {
            return Err(DlmError::format(
                "benchmark matrices",
                &path,
                format!("shape {:?}, expected [R, {n}, {n}]", arr.shape()),
            ));
        }
        let probs: Vec<ArrayD<f64>> = arr.axis_iter(Axis(0)).map(|v| v.to_owned()).collect();
        let mut out = Vec::new();
        let mut totals = Vec::new();
        for p in &probs {
            s.argmax(p.view(), &mut out)?;
            totals.push(num(dlm_core::structure::score(&p.view(), &out)));
        }
        let mut per_rep = Vec::new();
        for _ in 0..a.reps.max(1) {
            let t = Instant::now();
            for p in &probs {
                s.argmax(p.view(), &mut out)?;
            }
            per_rep.push(t.elapsed().as_secs_f64() * 1e6 / probs.len() as f64);
        }
        per_rep.sort_by(f64::total_cmp);
        rows.push(json!({"n": n, "algo": "lapjv", "us_per_solve": num(per_rep[per_rep.len() / 2]), "total": totals}));
    }
    print_json(&json!(rows));
    Ok(ExitCode::SUCCESS)
}

/// Largest layer width, query and candidate count of `dlm bench knn-step`.
const MAX_KNN_BENCH: usize = 1 << 14;

/// Flops of one k-NN training step: the mlp's forward pass (`2 rows in out` per layer), its
/// backward pass (the weight gradient of every layer and the input gradient of every layer
/// but the first), the distance matrix `2 Q C E` and its gradient `4 Q C E`.
fn knn_step_flops(sizes: &[usize], rows: usize, q: usize, c: usize) -> f64 {
    let layers: Vec<f64> = sizes
        .windows(2)
        .map(|w| 2.0 * rows as f64 * (w[0] * w[1]) as f64)
        .collect();
    let net: f64 = layers.iter().sum::<f64>() * 2.0 + layers[1..].iter().sum::<f64>();
    let e = *sizes.last().expect("sizes") as f64;
    net + 6.0 * q as f64 * c as f64 * e
}

/// Flops per second of `C = A B` with `A` `[m, k]`, `B` `[k, n]` by
/// [`dlm_core::linalg::par_gemm`] on the current pool: the best of repeated products over at
/// least `seconds`.
fn gemm_rate(m: usize, k: usize, n: usize, seconds: f64) -> f64 {
    let a = ndarray::Array2::from_shape_fn((m, k), |(i, j)| ((i * 7 + j * 3) % 11) as f64 - 5.0);
    let b = ndarray::Array2::from_shape_fn((k, n), |(i, j)| ((i * 5 + j) % 13) as f64 - 6.0);
    let mut c = ndarray::Array2::<f64>::zeros((m, n));
    let mut best = f64::INFINITY;
    let start = Instant::now();
    let mut reps = 0;
    while reps < 3 || start.elapsed().as_secs_f64() < seconds {
        let t = Instant::now();
        dlm_core::linalg::par_gemm(1.0, &a.view(), &b.view(), 0.0, &mut c.view_mut());
        best = best.min(t.elapsed().as_secs_f64());
        reps += 1;
    }
    2.0 * (m * k * n) as f64 / best
}

fn bench_knn_step(reg: &Registry, a: &KnnStepArgs) -> Result<ExitCode> {
    use dlm_tasks::data::{Dataset, Split};
    use dlm_tasks::knn::{KnnSettings, KnnTask};
    use dlm_tasks::trainer::Task;
    let sizes: Vec<usize> = a
        .sizes
        .split('-')
        .map(|s| s.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| DlmError::invalid("--sizes", format!("'{}': e.g. 784-256-64", a.sizes)))?;
    if sizes.len() < 2 || sizes.contains(&0) {
        return Err(DlmError::invalid(
            "--sizes",
            "give at least two positive widths",
        ));
    }
    for (flag, v) in [
        ("--queries", a.queries),
        ("--candidates", a.candidates),
        ("--steps", a.steps),
        ("--sizes", *sizes.iter().max().expect("two sizes")),
    ] {
        if v == 0 {
            return Err(DlmError::invalid(flag, "must be at least 1"));
        }
        dlm_core::limits::at_most(flag, v, MAX_KNN_BENCH, "a benchmark, not a training run")?;
    }
    if a.epochs == 0 || a.epochs > 1000 {
        return Err(DlmError::invalid("--epochs", "give 1 to 1000"));
    }
    let d = sizes[0];
    let n = (a.steps * a.queries).max(a.queries + a.candidates);
    let images = |count: usize, tag: u64| {
        let mut rng = rng_for(a.seed, Stream::Other, &[0x4b4e_4e42, tag]);
        ndarray::Array2::from_shape_fn((count, d), |_| open01(&mut rng))
    };
    let labels = |count: usize| (0..count).map(|i| (i % 10) as u8).collect::<Vec<u8>>();
    let split = Split {
        train: Dataset::new(images(n, 0), labels(n), [1, 1, d], 10, "random")?,
        test: Dataset::new(images(10, 1), labels(10), [1, 1, d], 10, "random")?,
    };
    let mu =
        reg.scorer(&format!("mlp:sizes={},opt=adam,lr=1e-3,seed={}", a.sizes, a.seed).parse()?)?;
    let settings = KnnSettings {
        k: a.k,
        queries: a.queries,
        candidates: a.candidates,
        estimator: dlm_core::DlmEstimator {
            epsilon: -0.1,
            draws: 1,
            escape_factor: 1.1,
            max_abs_epsilon: 0.9999,
        },
        seed: a.seed,
    };
    let mut task = KnnTask::new(
        settings,
        split,
        reg.structure(&Spec::named("topk").with("k", a.k))?,
        reg.noise(&Spec::named("gumbel"))?,
        reg.loss(&Spec::named("label-mismatch"))?,
        mu,
        dlm_tasks::NoiseScale::Fixed(0.3),
    )?;
    task.train_epoch(0)?;
    dlm_core::profile::reset();
    dlm_core::profile::set_enabled(true);
    let start = Instant::now();
    for e in 1..=a.epochs {
        task.train_epoch(e)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    dlm_core::profile::set_enabled(false);
    let threads = rayon::current_num_threads();
    let steps = a.epochs * (n / a.queries) as u64;
    // The cost model per step (a step is what an epoch is to the report).
    let p = dlm_core::profile::snapshot().report(steps, seconds, threads);
    let rows = a.queries + a.candidates;
    let flops = knn_step_flops(&sizes, rows, a.queries, a.candidates);
    // The GEMM rate of this machine for the step's largest product (the first layer's), on
    // all threads and on one, measured now.
    let rate = gemm_rate(rows, sizes[0], sizes[1], 0.3);
    let rate_1 = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| DlmError::invalid("--threads", e.to_string()))?
        .install(|| gemm_rate(rows, sizes[0], sizes[1], 0.3));
    let floor = flops / rate;
    let ratio = p.epoch_seconds / floor;
    let phases: serde_json::Map<String, serde_json::Value> = p
        .phases
        .iter()
        .map(|(k, v)| (k.to_string(), num(*v)))
        .collect();
    if a.json {
        print_json(&json!({
            "sizes": sizes, "queries": a.queries, "candidates": a.candidates, "k": a.k,
            "threads": threads, "steps": steps,
            "step_seconds": num(p.epoch_seconds),
            "flops_per_step": num(flops),
            "gemm_flops_per_second": num(rate),
            "gemm_flops_per_second_one_thread": num(rate_1),
            "gemm_floor_seconds": num(floor),
            "floor_ratio": num(ratio),
            "phases": phases,
            "solver_floor_seconds": num(p.solver_floor_seconds),
        }));
    } else {
        eprint!(
            "{}",
            p.table()
                .replace("ms/epoch", "ms/step")
                .replace(" epochs on", " steps on")
        );
        eprintln!(
            "k-NN step: {:.3} ms; {:.1} Mflop at {:.2} Gflop/s ({} threads; {:.2} on one) = GEMM floor {:.3} ms; step / floor {:.2}",
            p.epoch_seconds * 1e3,
            flops / 1e6,
            rate / 1e9,
            threads,
            rate_1 / 1e9,
            floor * 1e3,
            ratio
        );
    }
    Ok(ExitCode::SUCCESS)
}
