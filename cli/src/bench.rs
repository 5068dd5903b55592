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
