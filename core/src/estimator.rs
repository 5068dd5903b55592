//! The DLM gradient estimator (seed Corollary 2, theory.md §3).
//!
//! For each example `b` with potentials `theta_b`, noise scale `sigma_b` and target `t_b`,
//! and each draw `d` of the perturbation `gamma`:
//!
//! ```text
//!   y*      = argmax <theta_b + sigma_b * gamma, phi(y)>
//!   y*(eps) = argmax <theta_b + sigma_b * gamma, phi(y)> + eps * l(t_b, y)
//!   g_theta = (phi(y*(eps)) - phi(y*)) / eps           (gradient w.r.t. the potentials)
//!   g_sigma = <gamma, phi(y*(eps)) - phi(y*)> / eps    (gradient w.r.t. sigma_b)
//! ```
//!
//! averaged over the draws. Both signs of `eps` estimate the same gradient; the seed uses a
//! negative `eps` (the augmented argmax is pulled towards low loss). When every draw of the
//! batch gives a zero direction while the loss is still positive, `|eps|` is multiplied by
//! `escape_factor` and the augmented solves are repeated, up to `max_abs_epsilon`.
//!
//! **What `eps` does to the estimate.** The direction is a finite difference of the perturbed
//! expected loss in `eps`; it is the gradient only in the limit `eps -> 0`. A larger `|eps|`
//! (relative to the spread of the scores) gives a **larger finite-difference bias** — the
//! estimate becomes the gradient of a loss-augmented, smoothed objective, and its size shrinks
//! as `1/eps` once the augmented argmax has reached the truth — but fewer zero directions. A
//! smaller `|eps|` gives a smaller bias but **more zero directions**: fewer informative draws,
//! a higher-variance estimate, and no gradient at all when every direction is zero. The seed's
//! escape only grows `|eps|`, to an absolute cap; when the scores grow during training (an
//! embedding whose distances grow), a capped `|eps|` ends with almost every direction zero. The
//! adaptive policy ([`crate::adaptive`], `--eps-policy adaptive`) keeps `|eps|` relative to
//! the scores' spread and holds the zero-direction rate in a band, trading the two explicitly.
//!
//! The noise of (epoch, example, draw) comes from [`noise_rng`], so the estimate does not
//! depend on the number of threads: pairs are solved in parallel and reduced in a fixed order.
//!
//! [`DlmEstimator`] is also a [`GradientEstimator`] (the `dlm` of `--estimator`), with the
//! current `eps` kept in an [`EstimatorState`]; [`Batch`], [`NoiseKey`], [`Estimate`] and
//! [`Diagnostics`] are defined in [`gradient`](crate::gradient) and re-exported here.

use crate::error::{ensure_finite, DlmError, Result};
pub use crate::gradient::{Batch, Diagnostics, Estimate, NoiseKey};
use crate::gradient::{EstimatorState, GradientEstimator};
use crate::loss::Loss;
use crate::noise::NoiseModel;
use crate::profile;
use crate::rng::noise_rng;
use crate::structure::StructuredArgmax;
use ndarray::{Array1, ArrayD, ArrayViewD, ArrayViewMutD, IxDyn};
use rayon::prelude::*;
use std::time::Instant;

/// Most `batch x draws x potentials` one estimate may work on (2^28: each of its three
/// per-draw vectors then takes 2 GiB), checked before anything is allocated for the step.
pub const MAX_STEP_VALUES: usize = 1 << 28;

/// Settings of the estimator.
#[derive(Debug, Clone, PartialEq)]
pub struct DlmEstimator {
    /// Initial `eps` (non-zero; negative follows the seed).
    pub epsilon: f64,
    /// Noise draws per example.
    pub draws: usize,
    /// Factor applied to `|eps|` while every direction is zero and the loss is positive (1.1).
    pub escape_factor: f64,
    /// Largest `|eps|` the escape may reach.
    pub max_abs_epsilon: f64,
}

impl Default for DlmEstimator {
    fn default() -> Self {
        DlmEstimator {
            epsilon: -1.0,
            draws: 5,
            escape_factor: 1.1,
            max_abs_epsilon: 1e3,
        }
    }
}

/// The former name of [`Estimate`], kept so that existing code compiles unchanged.
pub type DlmEstimate = Estimate;

/// The name of DLM's state value in an [`EstimatorState`]: the current `eps` after
/// zero-direction escapes, which the next batch starts from.
pub const EPSILON_STATE: &str = "epsilon";

/// Reusable buffers of one (example, draw) pair.
#[derive(Debug, Default, Clone)]
struct Pair {
    gamma: Vec<f64>,
    pert: Vec<f64>,
    aug: Vec<f64>,
    y: Vec<usize>,
    y_eps: Vec<usize>,
    loss: f64,
    /// `--profile`: nanoseconds of noise, plain solve, augmented solve and the rest.
    nanos: [u64; 4],
}

/// Buffers reused across calls so that the hot loop does not allocate.
#[derive(Debug, Default, Clone)]
pub struct Workspace {
    pairs: Vec<Pair>,
    lin: Vec<f64>,
    linear: bool,
}

impl Workspace {
    /// Empty buffers; they grow on first use.
    pub fn new() -> Self {
        Self::default()
    }
}

impl DlmEstimator {
    /// Validates the settings.
    pub fn validate(&self) -> Result<()> {
        if !(self.epsilon.is_finite() && self.epsilon != 0.0) {
            return Err(DlmError::invalid(
                "epsilon",
                format!(
                    "{} is not allowed: epsilon must be finite and non-zero (the seed uses -12 for sorting, -0.1 for k-NN)",
                    self.epsilon
                ),
            ));
        }
        if self.draws == 0 {
            return Err(DlmError::invalid(
                "draws",
                "must be at least 1 (the seed uses 5)",
            ));
        }
        if !(self.escape_factor.is_finite() && self.escape_factor >= 1.0) {
            return Err(DlmError::invalid(
                "escape factor",
                "must be finite and >= 1 (1 disables the escape; the seed uses 1.1)",
            ));
        }
        if !(self.max_abs_epsilon.is_finite() && self.max_abs_epsilon > 0.0) {
            return Err(DlmError::invalid(
                "max |epsilon|",
                "must be finite and positive",
            ));
        }
        Ok(())
    }

    /// Estimates the DLM gradient for one batch.
    ///
    /// # Example
    /// One example of a 3-class argmax whose network prefers class 1 while the truth is 0;
    /// with the 0/1 loss (`L = -e_0`, linear) the estimated `d E[loss] / d theta` is negative
    /// for the true class and positive for the preferred wrong one.
    /// ```
    /// # use dlm_core::rng::{open01, DlmRng};
    /// # use dlm_core::structure::checked_slice;
    /// # use dlm_core::{Loss, NoiseModel, Result, StructuredArgmax, Target, EULER_GAMMA};
    /// # use ndarray::{ArrayViewD, ArrayViewMutD};
    /// # struct Best;
    /// # impl StructuredArgmax for Best {
    /// #     fn name(&self) -> &str { "best" }
    /// #     fn check_shape(&self, s: &[usize]) -> Result<()> {
    /// #         if s.len() == 1 { Ok(()) } else { Err(dlm_core::DlmError::shape("best", "[C]", s)) }
    /// #     }
    /// #     fn argmax(&self, theta: ArrayViewD<'_, f64>, out: &mut Vec<usize>) -> Result<()> {
    /// #         let t = checked_slice(self, &theta)?;
    /// #         out.clear();
    /// #         out.push((1..t.len()).fold(0, |b, i| if t[i] > t[b] { i } else { b }));
    /// #         Ok(())
    /// #     }
    /// # }
    /// # struct ZeroMeanGumbel;
    /// # impl NoiseModel for ZeroMeanGumbel {
    /// #     fn name(&self) -> &str { "zm-gumbel" }
    /// #     fn sample(&self, rng: &mut DlmRng, out: &mut [f64]) -> Result<()> {
    /// #         for v in out { *v = -(-open01(rng).ln()).ln() - EULER_GAMMA; }
    /// #         Ok(())
    /// #     }
    /// #     fn mean(&self) -> f64 { 0.0 }
    /// #     fn variance(&self) -> f64 { std::f64::consts::PI.powi(2) / 6.0 }
    /// # }
    /// # struct ZeroOne;
    /// # impl Loss for ZeroOne {
    /// #     fn name(&self) -> &str { "zero-one" }
    /// #     fn value(&self, t: &Target, _s: &[usize], a: &[usize]) -> Result<f64> {
    /// #         Ok((a != t.truth.as_slice()) as u8 as f64)
    /// #     }
    /// #     fn linear_form(&self, t: &Target, mut out: ArrayViewMutD<'_, f64>) -> Result<Option<f64>> {
    /// #         out.fill(0.0);
    /// #         out.as_slice_mut().unwrap()[t.truth[0]] = -1.0;
    /// #         Ok(Some(1.0))
    /// #     }
    /// # }
    /// use dlm_core::{Batch, DlmEstimator, NoiseKey, Workspace};
    /// use ndarray::{arr1, arr2};
    ///
    /// let theta = arr2(&[[0.0, 1.0, -0.5]]).into_dyn(); // [B = 1, C = 3]
    /// let sigma = arr1(&[1.0]);
    /// let targets = [Target { truth: vec![0], weights: vec![] }];
    /// let batch = Batch { theta: theta.view(), sigma: sigma.view(), targets: &targets, example_ids: &[0] };
    /// let est = DlmEstimator { epsilon: -1.0, draws: 2000, ..DlmEstimator::default() };
    /// let e = est.estimate(&mut Workspace::new(), &Best, &ZeroMeanGumbel, &ZeroOne, &batch,
    ///                      NoiseKey { seed: 7, epoch: 0 })?;
    /// assert!(e.grad_theta[[0, 0]] < 0.0 && e.grad_theta[[0, 1]] > 0.0);
    /// assert_eq!(e.diagnostics.total_draws, 2000);
    /// # Ok::<(), dlm_core::DlmError>(())
    /// ```
    pub fn estimate(
        &self,
        ws: &mut Workspace,
        structure: &dyn StructuredArgmax,
        noise: &dyn NoiseModel,
        loss: &dyn Loss,
        batch: &Batch<'_>,
        key: NoiseKey,
    ) -> Result<DlmEstimate> {
        self.validate()?;
        let shape = batch.theta.shape();
        if shape.is_empty() || shape[0] == 0 {
            return Err(DlmError::Empty {
                what: "batch".into(),
                hint: "give at least one example".into(),
            });
        }
        let b_count = shape[0];
        let inner: Vec<usize> = shape[1..].to_vec();
        structure.check_shape(&inner)?;
        let m: usize = inner.iter().product();
        if batch.sigma.len() != b_count
            || batch.targets.len() != b_count
            || batch.example_ids.len() != b_count
        {
            return Err(DlmError::invalid(
                "batch",
                format!(
                    "theta has {b_count} examples but sigma has {}, targets {}, example ids {}",
                    batch.sigma.len(),
                    batch.targets.len(),
                    batch.example_ids.len()
                ),
            ));
        }
        // Every (example, draw) pair keeps its noise, perturbed and augmented potentials.
        crate::limits::at_most(
            "batch x draws x potentials per example",
            b_count.saturating_mul(self.draws).saturating_mul(m),
            MAX_STEP_VALUES,
            "one step keeps the noise, perturbed and loss-augmented potentials of every \
             example and draw, 6 GiB at the limit; use a smaller batch or fewer draws",
        )?;
        let theta_std = batch.theta.as_standard_layout();
        let theta = theta_std.as_slice().expect("standard layout");
        ensure_finite("potentials", theta)?;
        for (b, &s) in batch.sigma.iter().enumerate() {
            if !(s.is_finite() && s >= 0.0) {
                return Err(DlmError::invalid(
                    "sigma",
                    format!("sigma of example {b} is {s}; the noise scale must be finite and >= 0"),
                ));
            }
        }

        // Linear forms L(t_b), once per example.
        ws.lin.resize(b_count * m, 0.0);
        ws.linear = true;
        for b in 0..b_count {
            let out = ArrayViewMutD::from_shape(IxDyn(&inner), &mut ws.lin[b * m..(b + 1) * m])
                .expect("shape matches");
            match loss.linear_form(&batch.targets[b], out)? {
                Some(_) => {}
                None => {
                    ws.linear = false;
                    break;
                }
            }
        }
        if ws.linear {
            ensure_finite("loss linear form", &ws.lin)?;
        }

        let draws = self.draws;
        let n_pairs = b_count * draws;
        if ws.pairs.len() < n_pairs {
            ws.pairs.resize_with(n_pairs, Pair::default);
        }
        let mut eps = self.epsilon;
        let lin = &ws.lin;
        let linear = ws.linear;
        let pairs = &mut ws.pairs[..n_pairs];

        // Phase 1: draw, perturb, solve plain and augmented, in parallel chunks of pairs, each
        // chunk phase by phase: with `--profile` the clock is read once per phase and chunk,
        // and twice per pair (to split its two solves).
        let prof = profile::enabled();
        let clock = || prof.then(Instant::now);
        let ns = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
            (Some(a), Some(b)) => b.saturating_duration_since(a).as_nanos() as u64,
            _ => 0,
        };
        let region = clock();
        // Small chunks balance the workers' loads (a pair's solves vary), but at least ~512
        // potentials each, so that tiny problems are not split below the cost of a hand-off.
        let chunk = n_pairs
            .div_ceil(16 * rayon::current_num_threads())
            .max(512usize.div_ceil(m.max(1)))
            .max(1);
        pairs
            .par_chunks_mut(chunk)
            .enumerate()
            .try_for_each(|(c, ps)| -> Result<()> {
                let first = c * chunk;
                let t0 = clock();
                for (j, p) in ps.iter_mut().enumerate() {
                    let (b, d) = ((first + j) / draws, (first + j) % draws);
                    p.gamma.resize(m, 0.0);
                    p.pert.resize(m, 0.0);
                    p.aug.resize(m, 0.0);
                    let mut rng = noise_rng(key.seed, key.epoch, batch.example_ids[b], d as u64);
                    noise.sample(&mut rng, &mut p.gamma)?;
                    let th = &theta[b * m..(b + 1) * m];
                    crate::predictor::perturb(th, batch.sigma[b], &p.gamma, &mut p.pert)?;
                }
                let t1 = clock();
                if linear {
                    for (j, p) in ps.iter_mut().enumerate() {
                        let b = (first + j) / draws;
                        let l = &lin[b * m..(b + 1) * m];
                        for ((a, &q), &li) in p.aug.iter_mut().zip(&p.pert).zip(l) {
                            *a = q + eps * li;
                        }
                    }
                }
                let t2 = clock();
                let (mut start, mut solves) = (t2, [0u64; 2]);
                for (j, p) in ps.iter_mut().enumerate() {
                    let b = (first + j) / draws;
                    let pert = ArrayViewD::from_shape(IxDyn(&inner), &p.pert[..]).expect("shape");
                    let mark = if linear {
                        let aug = ArrayViewD::from_shape(IxDyn(&inner), &p.aug[..]).expect("shape");
                        structure.argmax_pair(pert, aug, &mut p.y, &mut p.y_eps)?;
                        if prof {
                            profile::take_pair_mark()
                        } else {
                            None
                        }
                    } else {
                        structure.argmax(pert.view(), &mut p.y)?;
                        let mark = clock();
                        structure.argmax_loss_augmented(
                            pert,
                            loss,
                            &batch.targets[b],
                            eps,
                            &mut p.y_eps,
                        )?;
                        mark
                    };
                    if let Some(s) = start {
                        let end = Instant::now();
                        let (plain, aug) = profile::split_pair(s, mark, end);
                        solves[0] += plain;
                        solves[1] += aug;
                        start = Some(end);
                    }
                }
                let t3 = start;
                for (j, p) in ps.iter_mut().enumerate() {
                    let b = (first + j) / draws;
                    p.loss = loss.value(&batch.targets[b], &inner, &p.y)?;
                }
                if prof {
                    // The chunk's times, on its first pair (the others' are zero).
                    for p in ps.iter_mut() {
                        p.nanos = [0; 4];
                    }
                    let rest = ns(t1, t2) + ns(t3, clock());
                    ps[0].nanos = [ns(t0, t1), solves[0], solves[1], rest];
                }
                Ok(())
            })?;
        if prof {
            profile::add_region(region);
            let mut sum = [0u64; 4];
            for p in pairs.iter() {
                for (s, v) in sum.iter_mut().zip(p.nanos) {
                    *s += v;
                }
            }
            for (phase, v) in [
                profile::Phase::Noise,
                profile::Phase::PlainSolves,
                profile::Phase::AugmentedSolves,
                profile::Phase::Bookkeeping,
            ]
            .into_iter()
            .zip(sum)
            {
                profile::add_thread(phase, v);
            }
            profile::count_solves(2 * n_pairs as u64);
        }

        // Phase 2: zero-direction escape.
        let mut escapes = 0;
        loop {
            let all_zero = pairs.iter().all(|p| p.y == p.y_eps);
            let mean_loss = pairs.iter().map(|p| p.loss).sum::<f64>() / n_pairs as f64;
            let next = eps * self.escape_factor;
            if !(all_zero && mean_loss > 0.0 && next.abs() <= self.max_abs_epsilon)
                || self.escape_factor == 1.0
            {
                break;
            }
            eps = next;
            escapes += 1;
            pairs
                .par_iter_mut()
                .enumerate()
                .with_min_len(4)
                .try_for_each(|(k, p)| -> Result<()> {
                    let b = k / draws;
                    if linear {
                        let l = &lin[b * m..(b + 1) * m];
                        for ((a, &q), &li) in p.aug.iter_mut().zip(&p.pert).zip(l) {
                            *a = q + eps * li;
                        }
                        let aug = ArrayViewD::from_shape(IxDyn(&inner), &p.aug[..]).expect("shape");
                        structure.argmax(aug, &mut p.y_eps)
                    } else {
                        let pert =
                            ArrayViewD::from_shape(IxDyn(&inner), &p.pert[..]).expect("shape");
                        structure.argmax_loss_augmented(
                            pert,
                            loss,
                            &batch.targets[b],
                            eps,
                            &mut p.y_eps,
                        )
                    }
                })?;
        }

        // Phase 3: reduce in a fixed order.
        let mut full_shape = vec![b_count];
        full_shape.extend_from_slice(&inner);
        let mut grad_theta = ArrayD::<f64>::zeros(IxDyn(&full_shape));
        let mut grad_sigma = Array1::<f64>::zeros(b_count);
        let mut loss_mean = Array1::<f64>::zeros(b_count);
        let gt = grad_theta
            .as_slice_mut()
            .expect("fresh array is contiguous");
        let w = 1.0 / (eps * draws as f64);
        let mut zero_directions = 0;
        for (k, p) in pairs.iter().enumerate() {
            let b = k / draws;
            loss_mean[b] += p.loss / draws as f64;
            if p.y == p.y_eps {
                zero_directions += 1;
                continue;
            }
            let g = &mut gt[b * m..(b + 1) * m];
            let mut dot = 0.0;
            for &i in &p.y_eps {
                g[i] += w;
                dot += p.gamma[i];
            }
            for &i in &p.y {
                g[i] -= w;
                dot -= p.gamma[i];
            }
            grad_sigma[b] += dot * w;
        }
        Ok(Estimate {
            grad_theta,
            grad_sigma,
            loss: loss_mean,
            diagnostics: Diagnostics {
                epsilon: eps,
                zero_directions,
                total_draws: n_pairs,
                escapes,
            },
        })
    }
}

/// DLM as a [`GradientEstimator`], registered as `dlm` by `dlm-plugin-estimators`.
///
/// The current `eps` lives in the state under [`EPSILON_STATE`] (`"epsilon"`): each call starts
/// from it (from [`DlmEstimator::epsilon`] when it is not set) and stores the `eps` it ended
/// with (after escapes), exactly as a caller of the inherent
/// [`DlmEstimator::estimate`] would carry `diagnostics.epsilon` into the next batch; the
/// results are bit-identical to that. The state's scratch holds the [`Workspace`].
///
/// Note: on a `DlmEstimator` value, method syntax `est.estimate(...)` picks the inherent
/// method (with a [`Workspace`]); call this one through `dyn GradientEstimator` or as
/// `GradientEstimator::estimate(&est, ...)`.
impl GradientEstimator for DlmEstimator {
    fn name(&self) -> &str {
        "dlm"
    }

    /// True: `grad_sigma = <gamma, phi(y*(eps)) - phi(y*)> / eps` estimates
    /// `d E[loss] / d sigma`.
    fn learns_sigma(&self) -> bool {
        true
    }

    fn uses_noise(&self) -> bool {
        true
    }

    /// `epsilon` = the configured initial `eps`.
    fn initial_state(&self) -> EstimatorState {
        let mut s = EstimatorState::new();
        s.set(EPSILON_STATE, self.epsilon);
        s
    }

    fn estimate(
        &self,
        state: &mut EstimatorState,
        structure: &dyn StructuredArgmax,
        noise: &dyn NoiseModel,
        loss: &dyn Loss,
        batch: &Batch<'_>,
        key: NoiseKey,
    ) -> Result<Estimate> {
        let current = DlmEstimator {
            epsilon: state.get(EPSILON_STATE).unwrap_or(self.epsilon),
            ..self.clone()
        };
        let e = current.estimate(
            state.scratch::<Workspace>(),
            structure,
            noise,
            loss,
            batch,
            key,
        )?;
        state.set(EPSILON_STATE, e.diagnostics.epsilon);
        Ok(e)
    }
}
