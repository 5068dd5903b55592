//! Noise moments (mean, variance) and CDFs of every noise model, with tolerances from the
//! sample size, plus counter-based seeding (thread-count invariance).

use dlm_core::rng::{noise_rng, rng_for, Stream};
use dlm_core::{NoiseModel, Registry, Spec};
use std::f64::consts::PI;

const N: usize = 200_000;
const Z: f64 = 5.0;

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register_builtin("noise", dlm_plugin_noise::register)
        .unwrap();
    r
}

fn draw(n: &dyn NoiseModel, count: usize, chunk: usize, seed: u64) -> Vec<f64> {
    let mut out = Vec::with_capacity(count);
    let mut buf = vec![0.0; chunk];
    for i in 0..count / chunk {
        let mut rng = rng_for(seed, Stream::Other, &[i as u64]);
        n.sample(&mut rng, &mut buf).unwrap();
        out.extend_from_slice(&buf);
    }
    out
}

/// Mean within Z standard errors; variance within Z standard errors of the sample variance
/// (its SE from the empirical fourth central moment).
fn check_moments(n: &dyn NoiseModel, spec: &str, chunk: usize) {
    let x = draw(n, N, chunk, 3);
    let len = x.len() as f64;
    let m = x.iter().sum::<f64>() / len;
    let v = x.iter().map(|a| (a - m).powi(2)).sum::<f64>() / (len - 1.0);
    let m4 = x.iter().map(|a| (a - m).powi(4)).sum::<f64>() / len;
    let se_m = (v / len).sqrt();
    let se_v = ((m4 - v * v) / len).sqrt();
    assert!(
        (m - n.mean()).abs() <= Z * se_m,
        "{spec}: mean {m} vs {} (tolerance {})",
        n.mean(),
        Z * se_m
    );
    assert!(
        (v - n.variance()).abs() <= Z * se_v,
        "{spec}: variance {v} vs {} (tolerance {})",
        n.variance(),
        Z * se_v
    );
}

/// Kolmogorov–Smirnov distance to the model's CDF within the DKW bound Z / sqrt(2N).
fn check_cdf(n: &dyn NoiseModel, spec: &str) {
    let mut x = draw(n, N, 100, 4);
    x.sort_by(f64::total_cmp);
    let len = x.len() as f64;
    let ks = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let g = n.cdf(v).unwrap();
            (g - i as f64 / len)
                .abs()
                .max(((i + 1) as f64 / len - g).abs())
        })
        .fold(0.0f64, f64::max);
    assert!(ks <= Z / (2.0 * len).sqrt(), "{spec}: KS distance {ks}");
}

#[test]
fn every_noise_model_has_the_moments_it_declares() {
    let reg = registry();
    for spec in [
        "gumbel",
        "gumbel:scale=2",
        "gumbel:variance=3",
        "gumbel-standard",
        "gaussian:std=0.5",
        "logistic:scale=1.5",
        "sum-of-gamma:k=5,tau=1,terms=10",
        "corr-gaussian:rho=0.6,kind=ar1,std=2",
        "corr-gaussian:rho=0.3,kind=equi",
    ] {
        let n = reg.noise(&spec.parse::<Spec>().unwrap()).unwrap();
        let chunk = if spec.starts_with("corr") { 20 } else { 100 };
        check_moments(n.as_ref(), spec, chunk);
        if n.cdf(0.0).is_some() {
            check_cdf(n.as_ref(), spec);
        }
    }
}

#[test]
fn zero_mean_gumbel_has_the_documented_constants() {
    let reg = registry();
    let g = reg.noise(&Spec::named("gumbel")).unwrap();
    assert_eq!(g.mean(), 0.0);
    assert!((g.variance() - PI * PI / 6.0).abs() < 1e-12);
    // G(t) = exp(-exp(-(t + c))): G(-c) = exp(-1).
    assert!((g.cdf(-dlm_core::EULER_GAMMA).unwrap() - (-1.0f64).exp()).abs() < 1e-12);
    let v3 = reg.noise(&"gumbel:variance=3".parse().unwrap()).unwrap();
    assert!((v3.variance() - 3.0).abs() < 1e-12);
}

#[test]
fn moment_check_catches_a_wrong_scale() {
    // A Gumbel whose declared variance is off by a factor (scale 1 declared, scale 1.05 drawn)
    // must fail the same check: shown by comparing against the wrong declared value directly.
    let reg = registry();
    let drawn = reg.noise(&"gumbel:scale=1.05".parse().unwrap()).unwrap();
    let x = draw(drawn.as_ref(), N, 100, 3);
    let len = x.len() as f64;
    let m = x.iter().sum::<f64>() / len;
    let v = x.iter().map(|a| (a - m).powi(2)).sum::<f64>() / (len - 1.0);
    let m4 = x.iter().map(|a| (a - m).powi(4)).sum::<f64>() / len;
    let se_v = ((m4 - v * v) / len).sqrt();
    assert!(
        (v - PI * PI / 6.0).abs() > Z * se_v,
        "a 10% variance error must be detected"
    );
}

#[test]
fn correlated_gaussian_has_the_requested_correlation() {
    let reg = registry();
    let n = reg
        .noise(&"corr-gaussian:rho=0.6,kind=ar1".parse().unwrap())
        .unwrap();
    let x = draw(n.as_ref(), N, 4, 8);
    // Adjacent entries within a draw have correlation 0.6, entries two apart 0.36.
    let pairs = |lag: usize| -> f64 {
        let mut s = 0.0;
        let mut c = 0;
        for d in x.chunks(4) {
            for i in 0..4 - lag {
                s += d[i] * d[i + lag];
                c += 1;
            }
        }
        s / c as f64
    };
    let se = (2.0 / (N as f64 / 4.0)).sqrt();
    assert!(
        (pairs(1) - 0.6).abs() < Z * se,
        "lag-1 correlation {}",
        pairs(1)
    );
    assert!(
        (pairs(2) - 0.36).abs() < Z * se,
        "lag-2 correlation {}",
        pairs(2)
    );
}

#[test]
fn noise_depends_only_on_seed_epoch_example_draw() {
    let reg = registry();
    let g = reg.noise(&Spec::named("gumbel")).unwrap();
    let sample = |seed, e, i, d| {
        let mut b = vec![0.0; 8];
        g.sample(&mut noise_rng(seed, e, i, d), &mut b).unwrap();
        b
    };
    assert_eq!(sample(1, 2, 3, 4), sample(1, 2, 3, 4));
    assert_ne!(sample(1, 2, 3, 4), sample(1, 2, 3, 5));
    assert_ne!(sample(1, 2, 3, 4), sample(1, 2, 4, 4));
    assert_ne!(sample(1, 2, 3, 4), sample(1, 3, 3, 4));
    assert_ne!(sample(1, 2, 3, 4), sample(2, 2, 3, 4));
}
