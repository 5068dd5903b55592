//! Criterion benches of the assignment solvers: `lap/<algo>/n=<n>` for single solves on
//! uniform [0,1) matrices (fixed seed), and `pair/<warm|cold>/n=<n>` for the plain plus
//! loss-augmented solve of one DLM draw (Gumbel-perturbed potentials, Hamming loss, eps = -12).
//!
//! Run: `cargo bench -p dlm-plugin-matching` (or `-- lap/lapjv` to filter).

// criterion's macros generate undocumented functions.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use dlm_core::rng::{open01, rng_for, Stream};
use dlm_core::StructuredArgmax;
use dlm_plugin_matching::{Algo, Matching};
use ndarray::{ArrayD, IxDyn};
use std::hint::black_box;

fn matrices(n: usize, count: usize, seed: u64) -> Vec<ArrayD<f64>> {
    (0..count)
        .map(|i| {
            let mut r = rng_for(seed, Stream::Other, &[n as u64, i as u64]);
            ArrayD::from_shape_fn(IxDyn(&[n, n]), |_| open01(&mut r))
        })
        .collect()
}

fn single(c: &mut Criterion) {
    let mut g = c.benchmark_group("lap");
    for &n in &[5usize, 10, 50, 100, 200] {
        let probs = matrices(n, 16, 1);
        for (name, algo) in [("lapjv", Algo::Lapjv), ("km", Algo::KuhnMunkres)] {
            let s = Matching::new(algo, true);
            let mut out = Vec::new();
            let mut i = 0;
            g.bench_with_input(BenchmarkId::new(name, format!("n={n}")), &n, |b, _| {
                b.iter(|| {
                    i = (i + 1) % probs.len();
                    s.argmax(black_box(probs[i].view()), &mut out).unwrap();
                })
            });
        }
    }
    g.finish();
}

fn pair(c: &mut Criterion) {
    let mut g = c.benchmark_group("pair");
    for &n in &[10usize, 50, 100] {
        let base = matrices(n, 16, 2);
        let mut r = rng_for(3, Stream::Other, &[0]);
        let pert: Vec<ArrayD<f64>> = base
            .iter()
            .map(|t| t.mapv(|v| v - (-open01(&mut r).ln()).ln()))
            .collect();
        // theta + eps * L with L = -1 on a fixed permutation (Hamming), eps = -12.
        let aug: Vec<ArrayD<f64>> = pert
            .iter()
            .map(|t| {
                let mut a = t.clone();
                for i in 0..n {
                    a[[i, (i * 7 + 1) % n]] += 12.0;
                }
                a
            })
            .collect();
        for (name, warm) in [("warm", true), ("cold", false)] {
            let s = Matching::new(Algo::Lapjv, warm);
            let (mut o1, mut o2) = (Vec::new(), Vec::new());
            let mut i = 0;
            g.bench_with_input(BenchmarkId::new(name, format!("n={n}")), &n, |b, _| {
                b.iter(|| {
                    i = (i + 1) % pert.len();
                    s.argmax_pair(pert[i].view(), aug[i].view(), &mut o1, &mut o2)
                        .unwrap();
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, single, pair);
criterion_main!(benches);
