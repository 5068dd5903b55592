//! Statistical checks of the theory (theory.md §2–3), for any Gumbel-family noise.
//!
//! Every check compares a Monte Carlo measurement with its exact value and passes when the
//! deviation is within a tolerance derived from the sample size: `z` standard errors (plus,
//! where an estimator has a known finite-`eps` bias, that bias computed exactly or measured
//! from both signs of `eps`). All draws come from counter-based generators of the seed.
//!
//! # Gumbel family at its own scale
//! A noise whose entries are Gumbel with location `a` and scale `beta`,
//! `F(x) = exp(-exp(-(x - a) / beta))`, has mean `a + beta c` and variance `beta^2 pi^2 / 6`
//! (`c` the Euler–Mascheroni constant); [`GumbelFit::of`] recovers `beta = sqrt(6 var) / pi`
//! and `a = mean - beta c` from the noise's `mean()` and `variance()` and checks its `cdf`
//! against `F`. Writing `gamma = a + beta g` with `g` standard Gumbel and `T = sigma beta`
//! (the effective temperature), `mu + sigma gamma = (mu + sigma a) + T g`, so for `C` classes:
//!
//! 1. `P[argmax_y mu_y + sigma gamma_y = y] = softmax(mu / T)_y`;
//! 2. `E[max_y mu_y + sigma gamma_y] = T log Zhat(mu / T) + sigma (a + beta c)
//!    = T log Zhat + sigma mean`, with `Zhat = sum_y exp(mu_y / T)`;
//! 3. `max_y mu_y + sigma gamma_y` is Gumbel with location `T log Zhat + sigma a` and scale
//!    `T`; equivalently `max / sigma - beta log Zhat` has the noise's own distribution;
//! 4. `d E[max] / d mu_y = softmax(mu / T)_y`.
//!
//! For zero-mean Gumbel of scale 1 (`a = -c`, `beta = 1`) these are theory.md's identities.
//! A noise that is not Gumbel-family (Gaussian, logistic, no closed-form CDF) gets skipped
//! rows with the reason ([`check_noise`]).
//!
//! The checks take the sampler or estimator under test as a parameter, so a test can feed a
//! deliberately wrong one (a flipped `eps`, a missing factor of `sigma`) and see them fail.

use crate::options::KitOptions;
use crate::util::{estimate_in_chunks, guarded, score_of, stats_per_entry, Classes, Solutions};
use dlm_core::error::{DlmError, Result};
use dlm_core::estimator::{Batch, DlmEstimate, DlmEstimator, NoiseKey, Workspace};
use dlm_core::loss::{Loss, Target};
use dlm_core::noise::{NoiseModel, EULER_GAMMA};
use dlm_core::rng::{open01, rng_for, DlmRng, Stream};
use dlm_core::structure::StructuredArgmax;
use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;
use std::f64::consts::PI;

pub use crate::report::{Check, Report, Status};

/// Location `a` and scale `beta` of a Gumbel-family noise:
/// `F(x) = exp(-exp(-(x - a) / beta))`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GumbelFit {
    /// The location `a` (the mode).
    pub location: f64,
    /// The scale `beta > 0`.
    pub scale: f64,
}

impl GumbelFit {
    /// Zero-mean Gumbel of scale 1 (theory.md §2): location `-c`, scale 1.
    pub const ZERO_MEAN: GumbelFit = GumbelFit {
        location: -EULER_GAMMA,
        scale: 1.0,
    };

    /// The Gumbel with this mean and variance: `beta = sqrt(6 variance) / pi`,
    /// `a = mean - beta c`; `None` unless both are finite and the variance positive.
    pub fn from_moments(mean: f64, variance: f64) -> Option<GumbelFit> {
        if !(mean.is_finite() && variance.is_finite() && variance > 0.0) {
            return None;
        }
        let scale = (6.0 * variance).sqrt() / PI;
        Some(GumbelFit {
            location: mean - scale * EULER_GAMMA,
            scale,
        })
    }

    /// The fit of `noise` from its `mean()` and `variance()`, accepted only if its `cdf`
    /// agrees with the fitted Gumbel CDF to 1e-6 at nine points across the bulk and the
    /// tails; otherwise the reason why the noise is not (recognisably) Gumbel-family.
    pub fn of(noise: &dyn NoiseModel) -> std::result::Result<GumbelFit, String> {
        let name = noise.name();
        let (mean, var) = (noise.mean(), noise.variance());
        let fit = GumbelFit::from_moments(mean, var).ok_or_else(|| {
            format!("noise '{name}' has mean {mean} and variance {var}: no Gumbel matches them")
        })?;
        for t in [-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0, 5.0] {
            let x = fit.location + fit.scale * t;
            let want = fit.cdf(x);
            match noise.cdf(x) {
                None => {
                    return Err(format!(
                        "noise '{name}' has no closed-form CDF, so it cannot be identified as \
                         Gumbel-family"
                    ))
                }
                Some(got) if (got - want).abs() <= 1e-6 => {}
                Some(got) => {
                    return Err(format!(
                        "noise '{name}' is not Gumbel-family: its CDF at {x:.4} is {got:.6} but \
                         the Gumbel with its mean {mean:.4} and variance {var:.4} (location \
                         {:.4}, scale {:.4}) has {want:.6}",
                        fit.location, fit.scale
                    ))
                }
            }
        }
        Ok(fit)
    }

    /// `F(x) = exp(-exp(-(x - a) / beta))`.
    pub fn cdf(&self, x: f64) -> f64 {
        (-(-(x - self.location) / self.scale).exp()).exp()
    }

    /// The mean `a + beta c`.
    pub fn mean(&self) -> f64 {
        self.location + self.scale * EULER_GAMMA
    }

    /// The effective temperature `T = sigma beta` of `mu + sigma gamma`.
    pub fn temperature(&self, sigma: f64) -> f64 {
        sigma * self.scale
    }

    fn describe(&self) -> String {
        format!("beta {:.4}, location {:.4}", self.scale, self.location)
    }
}

/// Softmax of `mu / t`.
pub fn softmax(mu: &[f64], t: f64) -> Vec<f64> {
    let m = mu.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let e: Vec<f64> = mu.iter().map(|&v| ((v - m) / t).exp()).collect();
    let z: f64 = e.iter().sum();
    e.iter().map(|v| v / z).collect()
}

/// `log Zhat(mu, t) = log sum_y exp(mu_y / t)`.
pub fn log_zhat(mu: &[f64], t: f64) -> f64 {
    let m = mu.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b)) / t;
    m + mu.iter().map(|&v| (v / t - m).exp()).sum::<f64>().ln()
}

/// A perturbed maximiser under test: given `mu`, `sigma` and a generator, returns the argmax
/// class of `mu + sigma * gamma` and the max value, drawing `gamma` from the generator.
pub type Sampler<'a> = dyn Fn(&[f64], f64, &mut DlmRng) -> Result<(usize, f64)> + Sync + 'a;

/// The correct sampler: one draw of `noise`, then `structure` (an argmax over classes).
pub fn structure_sampler<'a>(
    structure: &'a dyn StructuredArgmax,
    noise: &'a dyn NoiseModel,
) -> impl Fn(&[f64], f64, &mut DlmRng) -> Result<(usize, f64)> + Sync + 'a {
    move |mu: &[f64], sigma: f64, rng: &mut DlmRng| {
        let mut g = vec![0.0; mu.len()];
        noise.sample(rng, &mut g)?;
        let pert: Vec<f64> = mu.iter().zip(&g).map(|(m, g)| m + sigma * g).collect();
        let mut out = Vec::with_capacity(1);
        let view = ndarray::ArrayViewD::from_shape(IxDyn(&[mu.len()]), &pert).expect("1-d");
        structure.argmax(view, &mut out)?;
        let k = *out
            .first()
            .ok_or_else(|| DlmError::invalid("sampler", "empty solution"))?;
        if k >= pert.len() {
            return Err(DlmError::invalid(
                "sampler",
                format!("class {k} out of range"),
            ));
        }
        Ok((k, pert[k]))
    }
}

/// The sampler of the kit's own multiclass argmax with `noise`: what the identities of
/// [`check_noise`] run on.
pub fn noise_sampler(
    noise: &dyn NoiseModel,
) -> impl Fn(&[f64], f64, &mut DlmRng) -> Result<(usize, f64)> + Sync + '_ {
    structure_sampler(&Classes, noise)
}

fn draws<T: Send>(
    samples: usize,
    seed: u64,
    tag: u64,
    f: impl Fn(&mut DlmRng) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    (0..samples)
        .into_par_iter()
        .with_min_len(256)
        .map(|s| f(&mut rng_for(seed, Stream::Other, &[tag, s as u64])))
        .collect()
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, var.sqrt())
}

/// Identity 1: `P[argmax (mu + sigma gamma) = y] = softmax(mu / (sigma beta))_y`.
pub fn check_softmax_frequencies(
    sampler: &Sampler<'_>,
    fit: &GumbelFit,
    mu: &[f64],
    sigma: f64,
    samples: usize,
    seed: u64,
    z: f64,
) -> Result<Check> {
    let p = softmax(mu, fit.temperature(sigma));
    let ks = draws(samples, seed, 1, |r| sampler(mu, sigma, r).map(|x| x.0))?;
    let mut counts = vec![0usize; mu.len()];
    for k in ks {
        if k >= counts.len() {
            return Err(DlmError::invalid(
                "sampler",
                format!("class {k} out of range"),
            ));
        }
        counts[k] += 1;
    }
    let n = samples as f64;
    let entries: Vec<_> = p
        .iter()
        .zip(&counts)
        .enumerate()
        .map(|(y, (&p, &c))| {
            let f = c as f64 / n;
            (
                (f - p).abs(),
                z * (p * (1.0 - p) / n).sqrt(),
                format!(
                    "class {y}: frequency {f:.5} vs softmax {p:.5} ({})",
                    fit.describe()
                ),
            )
        })
        .collect();
    Ok(Check::worst(
        "argmax frequencies = softmax(mu/(sigma*beta))",
        samples,
        &entries,
    ))
}

/// Identity 2: `E[max_y mu_y + sigma gamma_y] = sigma beta log Zhat(mu / (sigma beta)) +
/// sigma mean`.
pub fn check_expected_max(
    sampler: &Sampler<'_>,
    fit: &GumbelFit,
    mu: &[f64],
    sigma: f64,
    samples: usize,
    seed: u64,
    z: f64,
) -> Result<Check> {
    let v = draws(samples, seed, 2, |r| sampler(mu, sigma, r).map(|x| x.1))?;
    let (m, sd) = mean_sd(&v);
    let t = fit.temperature(sigma);
    let exact = t * log_zhat(mu, t) + sigma * fit.mean();
    Ok(Check::worst(
        "E[max mu + sigma*gamma] = sigma*beta*log Zhat + sigma*mean",
        samples,
        &[(
            (m - exact).abs(),
            z * sd / (samples as f64).sqrt(),
            format!("mean {m:.5} vs {exact:.5} ({})", fit.describe()),
        )],
    ))
}

/// Identity 3: `max_y mu_y + sigma gamma_y` is Gumbel with location
/// `sigma beta log Zhat + sigma a` and scale `sigma beta`: the Kolmogorov–Smirnov distance of
/// the empirical CDF of `max / sigma - beta log Zhat` to the fitted `F`. The tolerance is
/// `z / sqrt(2N)`: by the DKW inequality the distance exceeds it with probability at most
/// `2 exp(-z^2)`.
pub fn check_max_distribution(
    sampler: &Sampler<'_>,
    fit: &GumbelFit,
    mu: &[f64],
    sigma: f64,
    samples: usize,
    seed: u64,
    z: f64,
) -> Result<Check> {
    let t = fit.temperature(sigma);
    let lz = log_zhat(mu, t);
    let mut v = draws(samples, seed, 3, |r| {
        sampler(mu, sigma, r).map(|x| x.1 / sigma - fit.scale * lz)
    })?;
    v.sort_by(f64::total_cmp);
    let n = samples as f64;
    let mut ks: f64 = 0.0;
    let mut at = 0.0;
    for (i, &x) in v.iter().enumerate() {
        let g = fit.cdf(x);
        let d = (g - i as f64 / n).abs().max(((i + 1) as f64 / n - g).abs());
        if d > ks {
            ks = d;
            at = x;
        }
    }
    Ok(Check::worst(
        "max ~ Gumbel(sigma*beta*log Zhat + sigma*location, sigma*beta) (KS)",
        samples,
        &[(
            ks,
            z / (2.0 * n).sqrt(),
            format!(
                "KS distance {ks:.5} at max/sigma - beta log Zhat = {at:.3}; log Zhat = {lz:.4} \
                 ({})",
                fit.describe()
            ),
        )],
    ))
}

/// Identity 4: `d/dmu_y E[max] = softmax(mu / (sigma beta))_y`, by central differences with
/// common random numbers.
pub fn check_gradient_of_max(
    sampler: &Sampler<'_>,
    fit: &GumbelFit,
    mu: &[f64],
    sigma: f64,
    samples: usize,
    seed: u64,
    z: f64,
) -> Result<Check> {
    let t = fit.temperature(sigma);
    let p = softmax(mu, t);
    let h = 1e-3 * t;
    let mut entries = Vec::new();
    for k in 0..mu.len() {
        let mut up = mu.to_vec();
        let mut dn = mu.to_vec();
        up[k] += h;
        dn[k] -= h;
        let d = draws(samples, seed, 4, |r| {
            let r2 = &mut r.clone();
            Ok((sampler(&up, sigma, r)?.1 - sampler(&dn, sigma, r2)?.1) / (2.0 * h))
        })?;
        let (m, sd) = mean_sd(&d);
        entries.push((
            (m - p[k]).abs(),
            z * sd / (samples as f64).sqrt() + 1e-12,
            format!(
                "mu_{k}: d E[max] {m:.5} vs softmax {:.5} ({})",
                p[k],
                fit.describe()
            ),
        ));
    }
    Ok(Check::worst(
        "d E[max] / d mu = softmax(mu/(sigma*beta))",
        samples,
        &entries,
    ))
}

/// One identity check, by name, to run panic-guarded.
type IdentityRow<'a> = (&'static str, Box<dyn Fn() -> Result<Check> + 'a>);

/// Names of the rows of [`check_noise`], in order.
pub const NOISE_ROWS: [&str; 5] = [
    "noise is Gumbel-family (CDF from its mean and variance)",
    "argmax frequencies = softmax(mu/(sigma*beta))",
    "E[max mu + sigma*gamma] = sigma*beta*log Zhat + sigma*mean",
    "max ~ Gumbel(sigma*beta*log Zhat + sigma*location, sigma*beta) (KS)",
    "d E[max] / d mu = softmax(mu/(sigma*beta))",
];

/// The potentials of the identities: `classes` values uniform in [-1, 1] from `seed`.
pub fn identity_potentials(classes: usize, seed: u64) -> Vec<f64> {
    let mut rng = rng_for(seed, Stream::Other, &[u64::MAX]);
    (0..classes).map(|_| 2.0 * open01(&mut rng) - 1.0).collect()
}

/// Identities 1–4 for `noise` at its own scale on the kit's multiclass argmax
/// (`opts.classes` classes with [`identity_potentials`], `opts.sigma`, `opts.samples` draws,
/// `opts.samples / 4` for identity 4), after a first row that fits the noise. When the noise
/// is not Gumbel-family all rows are skipped with the reason.
pub fn check_noise(noise: &dyn NoiseModel, opts: &KitOptions) -> Result<Report> {
    opts.validate()?;
    check_noise_with(&noise_sampler(noise), noise, opts)
}

/// [`check_noise`] with another sampler (e.g. a deliberately wrong one, or a registered
/// argmax structure through [`structure_sampler`]); `noise` gives the fit.
pub fn check_noise_with(
    sampler: &Sampler<'_>,
    noise: &dyn NoiseModel,
    opts: &KitOptions,
) -> Result<Report> {
    let mut r = Report::new();
    let fit = match guarded(|| Ok(GumbelFit::of(noise))) {
        Ok(Ok(fit)) => fit,
        Ok(Err(reason)) => {
            for name in NOISE_ROWS {
                r.push(Check::skipped(name, reason.clone()));
            }
            return Ok(r);
        }
        Err(f) => {
            r.push(Check::exact(
                NOISE_ROWS[0],
                false,
                0,
                format!("noise '{}': {f}", noise.name()),
            ));
            return Ok(r);
        }
    };
    r.push(Check::exact(
        NOISE_ROWS[0],
        true,
        9,
        format!(
            "noise '{}': Gumbel with {} (mean {:.4}, variance {:.4})",
            noise.name(),
            fit.describe(),
            noise.mean(),
            noise.variance()
        ),
    ));
    let mu = identity_potentials(opts.classes, opts.seed);
    let (s, n, seed, z) = (opts.sigma, opts.samples, opts.seed, opts.z);
    let rows: [IdentityRow<'_>; 4] = [
        (
            NOISE_ROWS[1],
            Box::new(|| check_softmax_frequencies(sampler, &fit, &mu, s, n, seed, z)),
        ),
        (
            NOISE_ROWS[2],
            Box::new(|| check_expected_max(sampler, &fit, &mu, s, n, seed, z)),
        ),
        (
            NOISE_ROWS[3],
            Box::new(|| check_max_distribution(sampler, &fit, &mu, s, n, seed, z)),
        ),
        (
            NOISE_ROWS[4],
            Box::new(|| check_gradient_of_max(sampler, &fit, &mu, s, (n / 4).max(100), seed, z)),
        ),
    ];
    for (name, f) in rows {
        r.push(match guarded(f) {
            Ok(c) => c,
            Err(f) => Check::exact(name, false, 0, format!("the sampler failed: {f}")),
        });
    }
    Ok(r)
}

/// An estimator under test: the DLM estimate for a batch at a given `eps`.
pub type EstimatorFn<'a> =
    dyn Fn(&Batch<'_>, NoiseKey, f64, usize) -> Result<DlmEstimate> + Sync + 'a;

/// The correct estimator: [`DlmEstimator`] with the escape disabled.
pub fn dlm_estimator<'a>(
    structure: &'a dyn StructuredArgmax,
    noise: &'a dyn NoiseModel,
    loss: &'a dyn Loss,
) -> impl Fn(&Batch<'_>, NoiseKey, f64, usize) -> Result<DlmEstimate> + Sync + 'a {
    move |batch: &Batch<'_>, key: NoiseKey, eps: f64, draws: usize| {
        let est = DlmEstimator {
            epsilon: eps,
            draws,
            escape_factor: 1.0,
            max_abs_epsilon: eps.abs(),
        };
        est.estimate(&mut Workspace::new(), structure, noise, loss, batch, key)
    }
}

/// (mean, standard error) of one estimated quantity.
type MeanSe = (f64, f64);

/// Runs the estimator in `chunks` independent chunks of `per_chunk` draws on one example and
/// returns per-entry (mean, standard error) of `grad_theta` and of `grad_sigma`.
#[allow(clippy::too_many_arguments)]
fn chunked_estimate(
    estimator: &EstimatorFn<'_>,
    theta: &ArrayD<f64>,
    sigma: f64,
    target: &Target,
    eps: f64,
    chunks: usize,
    per_chunk: usize,
    seed: u64,
) -> Result<(Vec<MeanSe>, MeanSe)> {
    let results = estimate_in_chunks(theta, sigma, target, chunks, seed, |batch, key| {
        estimator(batch, key, eps, per_chunk)
    })?;
    let se = |v: Vec<f64>| {
        let (mean, sd) = mean_sd(&v);
        (mean, sd / (v.len() as f64).sqrt())
    };
    let (theta_stats, sigma_stats) = stats_per_entry(&results, theta.len(), se);
    Ok((theta_stats, sigma_stats))
}

/// `E[gamma_{y*}]` minus the noise mean, for `y* = argmax th + sigma gamma` over classes:
/// `beta sum_y p_y (log Zhat(th / T) - th_y / T)`.
fn expected_gamma_at_argmax(th: &[f64], fit: &GumbelFit, sigma: f64) -> f64 {
    let t = fit.temperature(sigma);
    let p = softmax(th, t);
    let lz = log_zhat(th, t);
    fit.scale * p.iter().zip(th).map(|(p, v)| p * (lz - v / t)).sum::<f64>()
}

/// Check 5 (classes, exact): the DLM gradient (`mu` and `sigma` parts, at `eps`) of a loss with
/// values `loss_values[y]` on class `y` (a structure whose solutions are the one-hot classes)
/// against central finite differences of the exact expected loss
/// `sum_y softmax(theta / (sigma beta))_y loss_y` under Gumbel-family noise `fit`. The
/// tolerance is `z` standard errors plus the exactly computed bias of the estimator at this
/// finite `eps` (its expectation is `(softmax((theta + eps l) / T) - softmax(theta / T)) /
/// eps`, and for sigma the same difference of `E[gamma_{y*}]`).
#[allow(clippy::too_many_arguments)]
pub fn check_dlm_classes(
    estimator: &EstimatorFn<'_>,
    fit: &GumbelFit,
    theta: &[f64],
    sigma: f64,
    target: &Target,
    loss_values: &[f64],
    eps: f64,
    chunks: usize,
    per_chunk: usize,
    seed: u64,
    z: f64,
    name: &str,
) -> Result<Check> {
    let c = theta.len();
    if loss_values.len() != c {
        return Err(DlmError::invalid(
            "loss values",
            format!("{} values for {c} classes", loss_values.len()),
        ));
    }
    let expected_loss = |th: &[f64], s: f64| -> f64 {
        softmax(th, fit.temperature(s))
            .iter()
            .zip(loss_values)
            .map(|(p, l)| p * l)
            .sum()
    };
    let h = 1e-5;
    let fd_theta: Vec<f64> = (0..c)
        .map(|k| {
            let mut up = theta.to_vec();
            let mut dn = theta.to_vec();
            up[k] += h;
            dn[k] -= h;
            (expected_loss(&up, sigma) - expected_loss(&dn, sigma)) / (2.0 * h)
        })
        .collect();
    let fd_sigma = (expected_loss(theta, sigma + h) - expected_loss(theta, sigma - h)) / (2.0 * h);
    let aug: Vec<f64> = theta
        .iter()
        .zip(loss_values)
        .map(|(t, l)| t + eps * l)
        .collect();
    let t = fit.temperature(sigma);
    let (p, pa) = (softmax(theta, t), softmax(&aug, t));
    let exact_theta: Vec<f64> = (0..c).map(|k| (pa[k] - p[k]) / eps).collect();
    let exact_sigma = (expected_gamma_at_argmax(&aug, fit, sigma)
        - expected_gamma_at_argmax(theta, fit, sigma))
        / eps;

    let theta_arr = ArrayD::from_shape_vec(IxDyn(&[c]), theta.to_vec()).expect("1-d");
    let (ts, ss) = chunked_estimate(
        estimator, &theta_arr, sigma, target, eps, chunks, per_chunk, seed,
    )?;
    let mut entries: Vec<(f64, f64, String)> = (0..c)
        .map(|k| {
            (
                (ts[k].0 - fd_theta[k]).abs(),
                z * ts[k].1 + (exact_theta[k] - fd_theta[k]).abs() + 1e-9,
                format!(
                    "d/dtheta_{k}: DLM {:.5} (exact at eps {:.5}) vs FD {:.5}",
                    ts[k].0, exact_theta[k], fd_theta[k]
                ),
            )
        })
        .collect();
    entries.push((
        (ss.0 - fd_sigma).abs(),
        z * ss.1 + (exact_sigma - fd_sigma).abs() + 1e-9,
        format!(
            "d/dsigma: DLM {:.5} (exact at eps {exact_sigma:.5}) vs FD {fd_sigma:.5}",
            ss.0
        ),
    ));
    Ok(Check::worst(name, chunks * per_chunk, &entries))
}

/// Check 5 (argmax with the 0/1 loss, exact): [`check_dlm_classes`] with loss values
/// `[y != true_class]` (the estimator's loss must be the 0/1 loss, e.g. `zero-one`).
#[allow(clippy::too_many_arguments)]
pub fn check_dlm_argmax(
    estimator: &EstimatorFn<'_>,
    fit: &GumbelFit,
    theta: &[f64],
    sigma: f64,
    true_class: usize,
    eps: f64,
    chunks: usize,
    per_chunk: usize,
    seed: u64,
    z: f64,
) -> Result<Check> {
    let values: Vec<f64> = (0..theta.len())
        .map(|k| if k == true_class { 0.0 } else { 1.0 })
        .collect();
    let target = Target {
        truth: vec![true_class],
        weights: vec![],
    };
    check_dlm_classes(
        estimator,
        fit,
        theta,
        sigma,
        &target,
        &values,
        eps,
        chunks,
        per_chunk,
        seed,
        z,
        &format!("DLM gradient = FD of exact expected loss (argmax, eps {eps})"),
    )
}

/// Check 5 (any structure, Monte Carlo): the DLM gradient at `+eps` and `-eps` against central
/// finite differences of the expected loss, estimated with common random numbers. The
/// tolerance is `z` combined standard errors plus the estimator's `O(eps)` bias, measured as
/// half the difference between the `+eps` and `-eps` estimates.
///
/// Where the structure lists its solutions (`enumerate`, and not too many: at most ~200k
/// operations per draw, e.g. matchings up to 6 x 6), the finite differences use a brute-force
/// argmax over them, independent of the solver under test; otherwise the structure's own
/// argmax (the detail says which).
#[allow(clippy::too_many_arguments)]
pub fn check_dlm_monte_carlo(
    estimator: &EstimatorFn<'_>,
    structure: &dyn StructuredArgmax,
    noise: &dyn NoiseModel,
    loss: &dyn Loss,
    theta: &ArrayD<f64>,
    sigma: f64,
    target: &Target,
    eps: f64,
    h: f64,
    chunks: usize,
    per_chunk: usize,
    seed: u64,
    z: f64,
) -> Result<Vec<Check>> {
    let shape = theta.shape().to_vec();
    let m = theta.len();
    let samples = chunks * per_chunk;
    let th = theta.as_standard_layout().to_owned();
    let th = th.as_slice().expect("contiguous");
    // Brute force while one draw costs at most ~200k operations (e.g. matchings up to 6 x 6).
    let listed = structure.enumerate(&shape)?;
    let too_many = listed
        .as_ref()
        .is_some_and(|l| l.len() * (m + l.iter().map(Vec::len).max().unwrap_or(0)) > 200_000);
    let brute = match listed {
        Some(list) if !list.is_empty() && !too_many => Some(Solutions::new(list, true)),
        _ => None,
    };
    if let Some(b) = &brute {
        if let Some(bad) = b.list.iter().find(|s| s.iter().any(|&i| i >= m)) {
            return Err(DlmError::invalid(
                "enumerate",
                format!("solution {bad:?} has an index >= {m}"),
            ));
        }
    }
    // Loss of each listed solution, once, and which entries each solution covers.
    let brute_loss: Option<Vec<f64>> = match &brute {
        Some(b) => Some(
            b.list
                .iter()
                .map(|y| loss.value(target, &shape, y))
                .collect::<Result<_>>()?,
        ),
        None => None,
    };
    let fd_by = match &brute {
        Some(b) => format!(
            "FD by brute force over {} enumerated solutions",
            b.list.len()
        ),
        None if too_many => {
            "FD with the structure's own argmax (too many enumerated solutions)".to_string()
        }
        None => "FD with the structure's own argmax (enumerate returns None)".to_string(),
    };
    // Expected-loss finite differences with common random numbers: per draw, the loss at
    // theta +- h e_k (and at sigma +- h).
    let fd = draws(samples, seed ^ 0xFD, 5, |r| {
        let mut g = vec![0.0; m];
        noise.sample(r, &mut g)?;
        let base: Vec<f64> = th.iter().zip(&g).map(|(t, g)| t + sigma * g).collect();
        let up: Vec<f64> = th
            .iter()
            .zip(&g)
            .map(|(t, g)| t + (sigma + h) * g)
            .collect();
        let dn: Vec<f64> = th
            .iter()
            .zip(&g)
            .map(|(t, g)| t + (sigma - h) * g)
            .collect();
        let mut row = Vec::with_capacity(m + 1);
        if let (Some(b), Some(l)) = (&brute, &brute_loss) {
            // Brute force, independent of the solver: scores at the perturbed potentials,
            // then +-h on entry k changes exactly the solutions that contain k.
            let scores: Vec<f64> = b.list.iter().map(|y| score_of(&base, y)).collect();
            let mut member = vec![false; b.list.len() * m];
            for (j, y) in b.list.iter().enumerate() {
                for &i in y {
                    member[j * m + i] = true;
                }
            }
            let best = |k: usize, d: f64| -> f64 {
                let mut arg = (f64::NEG_INFINITY, 0);
                for (j, &sc) in scores.iter().enumerate() {
                    let v = if member[j * m + k] { sc + d } else { sc };
                    if v > arg.0 {
                        arg = (v, j);
                    }
                }
                l[arg.1]
            };
            for k in 0..m {
                row.push((best(k, h) - best(k, -h)) / (2.0 * h));
            }
            row.push((l[b.argmax_index(&up)] - l[b.argmax_index(&dn)]) / (2.0 * h));
        } else {
            let mut out = Vec::new();
            let mut lossat = |pert: &[f64]| -> Result<f64> {
                let v = ndarray::ArrayViewD::from_shape(IxDyn(&shape), pert).expect("shape");
                structure.argmax(v, &mut out)?;
                loss.value(target, &shape, &out)
            };
            let mut p = base.clone();
            for k in 0..m {
                p[k] = base[k] + h;
                let u = lossat(&p)?;
                p[k] = base[k] - h;
                let d = lossat(&p)?;
                p[k] = base[k];
                row.push((u - d) / (2.0 * h));
            }
            row.push((lossat(&up)? - lossat(&dn)?) / (2.0 * h));
        }
        Ok(row)
    })?;
    let fd_stats: Vec<(f64, f64)> = (0..=m)
        .map(|i| {
            let (mean, sd) = mean_sd(&fd.iter().map(|r| r[i]).collect::<Vec<_>>());
            (mean, sd / (samples as f64).sqrt())
        })
        .collect();
    let (tp, sp) = chunked_estimate(
        estimator,
        theta,
        sigma,
        target,
        eps.abs(),
        chunks,
        per_chunk,
        seed,
    )?;
    let (tn, sn) = chunked_estimate(
        estimator,
        theta,
        sigma,
        target,
        -eps.abs(),
        chunks,
        per_chunk,
        seed,
    )?;
    let mut checks = Vec::new();
    for (sign, ts, ss) in [("+", &tp, sp), ("-", &tn, sn)] {
        let mut entries: Vec<(f64, f64, String)> = (0..m)
            .map(|k| {
                let bias = (tp[k].0 - tn[k].0).abs() / 2.0;
                (
                    (ts[k].0 - fd_stats[k].0).abs(),
                    z * (ts[k].1.powi(2) + fd_stats[k].1.powi(2)).sqrt() + bias + 1e-9,
                    format!(
                        "d/dtheta_{k}: DLM {:.4} vs FD {:.4}; {fd_by}",
                        ts[k].0, fd_stats[k].0
                    ),
                )
            })
            .collect();
        let bias = (sp.0 - sn.0).abs() / 2.0;
        entries.push((
            (ss.0 - fd_stats[m].0).abs(),
            z * (ss.1.powi(2) + fd_stats[m].1.powi(2)).sqrt() + bias + 1e-9,
            format!(
                "d/dsigma: DLM {:.4} vs FD {:.4}; {fd_by}",
                ss.0, fd_stats[m].0
            ),
        ));
        checks.push(Check::worst(
            &format!(
                "DLM gradient = FD of MC expected loss ({} {:?}, eps {sign}{})",
                structure.name(),
                shape,
                eps.abs()
            ),
            samples,
            &entries,
        ));
    }
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::ZeroMeanGumbel;

    #[test]
    fn the_fit_of_the_kits_gumbel_is_the_zero_mean_one() {
        let fit = GumbelFit::of(&ZeroMeanGumbel).unwrap();
        assert!((fit.location - GumbelFit::ZERO_MEAN.location).abs() < 1e-12);
        assert!((fit.scale - 1.0).abs() < 1e-12);
        assert!(fit.mean().abs() < 1e-12);
    }

    #[test]
    fn nan_or_infinite_checks_never_pass() {
        let check = |deviation, tolerance| Check {
            name: "t".into(),
            deviation,
            tolerance,
            samples: 1,
            detail: String::new(),
            skipped: None,
        };
        assert!(check(0.1, 0.2).pass());
        for (d, t) in [
            (f64::NAN, 1.0),
            (0.0, f64::NAN),
            (f64::NAN, f64::NAN),
            (0.0, f64::INFINITY),
            (f64::INFINITY, f64::INFINITY),
            (-1.0, -0.5),
        ] {
            assert!(!check(d, t).pass(), "{d} {t}");
        }
    }
}
