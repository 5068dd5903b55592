//! Statistical checks of the theory (theory.md §2–3), shared by `dlm verify` and the tests.
//!
//! Every check compares a Monte Carlo measurement with its exact value and passes when the
//! deviation is within a tolerance derived from the sample size: `z` standard errors (plus,
//! where an estimator has a known finite-`eps` bias, that bias computed exactly or measured
//! from both signs of `eps`). All draws come from counter-based generators of the seed.
//!
//! The checks take the sampler or estimator under test as a parameter, so a test can feed a
//! deliberately wrong one (a flipped `eps`, a missing factor of `sigma`) and see them fail.

use dlm_core::error::{DlmError, Result};
use dlm_core::estimator::{Batch, DlmEstimate, DlmEstimator, NoiseKey, Workspace};
use dlm_core::loss::{Loss, Target};
use dlm_core::noise::NoiseModel;
use dlm_core::rng::{rng_for, DlmRng, Stream};
use dlm_core::structure::StructuredArgmax;
use ndarray::{Array1, ArrayD, IxDyn};
use rayon::prelude::*;

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// The measured deviation from the exact value (for the worst entry).
    pub deviation: f64,
    /// The allowed deviation for that entry.
    pub tolerance: f64,
    /// Samples (draws) used.
    pub samples: usize,
    /// Extra detail (which entry, the values compared).
    pub detail: String,
}

impl Check {
    /// Whether the deviation is within the tolerance (never for a NaN or infinite deviation
    /// or tolerance, nor for a negative tolerance).
    pub fn pass(&self) -> bool {
        self.deviation.is_finite()
            && self.tolerance.is_finite()
            && self.tolerance >= 0.0
            && self.deviation <= self.tolerance
    }

    fn worst(name: &str, samples: usize, entries: &[(f64, f64, String)]) -> Check {
        // entries: (deviation, tolerance, detail); report the one with the largest ratio.
        // deviation / tolerance, with 0/0 (an exactly known entry, e.g. a probability of 0)
        // counted as 0 and x/0 as infinite, so that NaN can never hide a failing entry.
        let ratio = |dev: f64, tol: f64| -> f64 {
            if dev.is_nan() || tol.is_nan() {
                f64::INFINITY
            } else if dev == 0.0 {
                0.0
            } else if tol > 0.0 {
                dev / tol
            } else {
                f64::INFINITY
            }
        };
        let (dev, tol, detail) = entries
            .iter()
            .max_by(|a, b| ratio(a.0, a.1).total_cmp(&ratio(b.0, b.1)))
            .cloned()
            .unwrap_or((f64::NAN, 0.0, "no entries".into()));
        Check {
            name: name.into(),
            deviation: dev,
            tolerance: tol,
            samples,
            detail,
        }
    }
}

/// Softmax of `mu / sigma`.
pub fn softmax(mu: &[f64], sigma: f64) -> Vec<f64> {
    let m = mu.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let e: Vec<f64> = mu.iter().map(|&v| ((v - m) / sigma).exp()).collect();
    let z: f64 = e.iter().sum();
    e.iter().map(|v| v / z).collect()
}

/// `log Zhat(mu, sigma) = log sum_y exp(mu_y / sigma)`.
pub fn log_zhat(mu: &[f64], sigma: f64) -> f64 {
    let m = mu.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b)) / sigma;
    m + mu.iter().map(|&v| (v / sigma - m).exp()).sum::<f64>().ln()
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
        Ok((k, pert[k]))
    }
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

/// Identity 1: `P[argmax (mu + sigma gamma) = y] = softmax(mu / sigma)_y`.
pub fn check_softmax_frequencies(
    sampler: &Sampler<'_>,
    mu: &[f64],
    sigma: f64,
    samples: usize,
    seed: u64,
    z: f64,
) -> Result<Check> {
    let p = softmax(mu, sigma);
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
                format!("class {y}: frequency {f:.5} vs softmax {p:.5}"),
            )
        })
        .collect();
    Ok(Check::worst(
        "argmax frequencies = softmax(mu/sigma)",
        samples,
        &entries,
    ))
}

/// Identity 2: `E[max_y mu_y + sigma gamma_y] = sigma log Zhat`.
pub fn check_expected_max(
    sampler: &Sampler<'_>,
    mu: &[f64],
    sigma: f64,
    samples: usize,
    seed: u64,
    z: f64,
) -> Result<Check> {
    let v = draws(samples, seed, 2, |r| sampler(mu, sigma, r).map(|x| x.1))?;
    let (m, sd) = mean_sd(&v);
    let exact = sigma * log_zhat(mu, sigma);
    Ok(Check::worst(
        "E[max mu + sigma*gamma] = sigma log Zhat",
        samples,
        &[(
            (m - exact).abs(),
            z * sd / (samples as f64).sqrt(),
            format!("mean {m:.5} vs {exact:.5}"),
        )],
    ))
}

/// Identity 3: `max_y mu_y/sigma + gamma_y` is zero-mean-Gumbel distributed around
/// `log Zhat`: the Kolmogorov–Smirnov distance of its empirical CDF to `G(t - log Zhat)`.
/// The tolerance is `z / sqrt(2N)`: by the DKW inequality the distance exceeds it with
/// probability at most `2 exp(-z^2)`.
pub fn check_max_distribution(
    sampler: &Sampler<'_>,
    noise: &dyn NoiseModel,
    mu: &[f64],
    sigma: f64,
    samples: usize,
    seed: u64,
    z: f64,
) -> Result<Check> {
    if noise.cdf(0.0).is_none() {
        return Err(DlmError::Unsupported {
            component: format!("noise '{}'", noise.name()),
            what: "a closed-form CDF".into(),
            hint: "use --noise gumbel for the Gumbel identities".into(),
        });
    }
    let mut v = draws(samples, seed, 3, |r| {
        sampler(mu, sigma, r).map(|x| x.1 / sigma)
    })?;
    v.sort_by(f64::total_cmp);
    let lz = log_zhat(mu, sigma);
    let n = samples as f64;
    let mut ks: f64 = 0.0;
    let mut at = 0.0;
    for (i, &x) in v.iter().enumerate() {
        let g = noise.cdf(x - lz).expect("checked");
        let d = (g - i as f64 / n).abs().max(((i + 1) as f64 / n - g).abs());
        if d > ks {
            ks = d;
            at = x;
        }
    }
    Ok(Check::worst(
        "max mu/sigma + gamma ~ Gumbel(mean log Zhat) (KS)",
        samples,
        &[(
            ks,
            z / (2.0 * n).sqrt(),
            format!("KS distance {ks:.5} at t = {at:.3}; log Zhat = {lz:.4}"),
        )],
    ))
}

/// Identity 4: `d/dmu_y E[max] = softmax(mu/sigma)_y`, by central differences with common
/// random numbers.
pub fn check_gradient_of_max(
    sampler: &Sampler<'_>,
    mu: &[f64],
    sigma: f64,
    samples: usize,
    seed: u64,
    z: f64,
) -> Result<Check> {
    let p = softmax(mu, sigma);
    let h = 1e-3 * sigma;
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
            format!("mu_{k}: d E[max] {m:.5} vs softmax {:.5}", p[k]),
        ));
    }
    Ok(Check::worst(
        "d E[max] / d mu = softmax(mu/sigma)",
        samples,
        &entries,
    ))
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
    let mut shape = vec![1];
    shape.extend_from_slice(theta.shape());
    let theta_b = theta
        .clone()
        .into_shape_with_order(IxDyn(&shape))
        .expect("same size");
    let sigma_b = Array1::from_elem(1, sigma);
    let targets = [target.clone()];
    let results: Vec<DlmEstimate> = (0..chunks)
        .map(|c| {
            estimator(
                &Batch {
                    theta: theta_b.view(),
                    sigma: sigma_b.view(),
                    targets: &targets,
                    example_ids: &[0],
                },
                NoiseKey {
                    seed,
                    epoch: c as u64,
                },
                eps,
                per_chunk,
            )
        })
        .collect::<Result<_>>()?;
    let m = theta.len();
    let se = |v: Vec<f64>| {
        let (mean, sd) = mean_sd(&v);
        (mean, sd / (v.len() as f64).sqrt())
    };
    let theta_stats = (0..m)
        .map(|i| {
            se(results
                .iter()
                .map(|r| r.grad_theta.as_slice().expect("contiguous")[i])
                .collect())
        })
        .collect();
    let sigma_stats = se(results.iter().map(|r| r.grad_sigma[0]).collect());
    Ok((theta_stats, sigma_stats))
}

/// Check 5 (argmax, exact): the DLM gradient (`mu` and `sigma` parts, at `eps`) against central
/// finite differences of the exact expected 0/1 loss `1 - softmax(theta/sigma)_t` (zero-mean
/// Gumbel noise). The tolerance is `z` standard errors plus the exactly computed bias of the
/// estimator at this finite `eps`.
#[allow(clippy::too_many_arguments)]
pub fn check_dlm_argmax(
    estimator: &EstimatorFn<'_>,
    theta: &[f64],
    sigma: f64,
    true_class: usize,
    eps: f64,
    chunks: usize,
    per_chunk: usize,
    seed: u64,
    z: f64,
) -> Result<Check> {
    let c = theta.len();
    let expected_loss = |th: &[f64], s: f64| 1.0 - softmax(th, s)[true_class];
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
    // Exact expectation of the estimator at this eps (Gumbel-max: P = softmax, and
    // E[gamma_{y*} 1(y* = y)] = p_y (log Zhat - theta_y / sigma)).
    let mut aug = theta.to_vec();
    aug[true_class] -= eps; // theta + eps * L with L = -e_t
    let (p, pa) = (softmax(theta, sigma), softmax(&aug, sigma));
    let exact_theta: Vec<f64> = (0..c).map(|k| (pa[k] - p[k]) / eps).collect();
    let eg = |th: &[f64], pr: &[f64]| {
        let lz = log_zhat(th, sigma);
        pr.iter()
            .zip(th)
            .map(|(p, t)| p * (lz - t / sigma))
            .sum::<f64>()
    };
    let exact_sigma = (eg(&aug, &pa) - eg(theta, &p)) / eps;

    let theta_arr = ArrayD::from_shape_vec(IxDyn(&[c]), theta.to_vec()).expect("1-d");
    let target = Target {
        truth: vec![true_class],
        weights: vec![],
    };
    let (ts, ss) = chunked_estimate(
        estimator, &theta_arr, sigma, &target, eps, chunks, per_chunk, seed,
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
    Ok(Check::worst(
        &format!("DLM gradient = FD of exact expected loss (argmax, eps {eps})"),
        chunks * per_chunk,
        &entries,
    ))
}

/// Check 5 (any structure, Monte Carlo): the DLM gradient at `+eps` and `-eps` against central
/// finite differences of the expected loss, estimated with common random numbers. The
/// tolerance is `z` combined standard errors plus the estimator's `O(eps)` bias, measured as
/// half the difference between the `+eps` and `-eps` estimates.
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
    // Expected-loss finite differences with common random numbers: per draw, the loss at
    // theta +- h e_k (and at sigma +- h).
    let fd = draws(samples, seed ^ 0xFD, 5, |r| {
        let mut g = vec![0.0; m];
        noise.sample(r, &mut g)?;
        let mut out = Vec::new();
        let mut lossat = |pert: &[f64]| -> Result<f64> {
            let v = ndarray::ArrayViewD::from_shape(IxDyn(&shape), pert).expect("shape");
            structure.argmax(v, &mut out)?;
            loss.value(target, &shape, &out)
        };
        let base: Vec<f64> = th.iter().zip(&g).map(|(t, g)| t + sigma * g).collect();
        let mut row = Vec::with_capacity(m + 1);
        let mut p = base.clone();
        for k in 0..m {
            p[k] = base[k] + h;
            let up = lossat(&p)?;
            p[k] = base[k] - h;
            let dn = lossat(&p)?;
            p[k] = base[k];
            row.push((up - dn) / (2.0 * h));
        }
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
        row.push((lossat(&up)? - lossat(&dn)?) / (2.0 * h));
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
                        "d/dtheta_{k}: DLM {:.4} vs FD {:.4}",
                        ts[k].0, fd_stats[k].0
                    ),
                )
            })
            .collect();
        let bias = (sp.0 - sn.0).abs() / 2.0;
        entries.push((
            (ss.0 - fd_stats[m].0).abs(),
            z * (ss.1.powi(2) + fd_stats[m].1.powi(2)).sqrt() + bias + 1e-9,
            format!("d/dsigma: DLM {:.4} vs FD {:.4}", ss.0, fd_stats[m].0),
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
    use super::Check;

    #[test]
    fn an_exactly_known_entry_cannot_hide_a_failing_one() {
        // Entry 0: deviation 0 with tolerance 0 (a probability of exactly 0); entry 1 fails.
        let c = Check::worst(
            "t",
            10,
            &[
                (0.0, 0.0, "exact".into()),
                (1.0, 0.5, "bad".into()),
                (0.1, 0.5, "ok".into()),
            ],
        );
        assert_eq!(c.detail, "bad");
        assert!(!c.pass());
        let c = Check::worst(
            "t",
            10,
            &[(0.0, 0.0, "exact".into()), (0.1, 0.5, "ok".into())],
        );
        assert!(c.pass(), "{c:?}");
    }

    #[test]
    fn nan_or_infinite_checks_never_pass() {
        let check = |deviation, tolerance| Check {
            name: "t".into(),
            deviation,
            tolerance,
            samples: 1,
            detail: String::new(),
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
