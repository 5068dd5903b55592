//! Gradient estimators ([`GradientEstimator`]) against independent computations.
//!
//! Each check runs the estimator under test through its trait and compares what it returns
//! with a value computed here without it:
//!
//! * [`check_closed_form`]: the published formula of the estimator ([`Formula`]), evaluated by
//!   brute force over the structure's `enumerate`d solutions with the **same** noise draws
//!   (the counter-based contract: draw `d` of example `b` is `noise.sample` on
//!   [`noise_rng`]`(key.seed, key.epoch, example_ids[b], d)`). Exact up to rounding.
//! * [`check_surrogate_fd`]: central finite differences of the estimator's own surrogate loss
//!   ([`Surrogate`]: the perturbed Fenchel-Young loss with the same draws, SPO+), also by
//!   brute force. Both are piecewise linear, so at generic points the difference quotient
//!   equals the (sub)gradient; draws whose maximiser changes within the step are detected and
//!   widen the tolerance by exactly what they can change.
//! * [`check_fy_classes`], [`check_imle_classes`]: on a multiclass argmax with Gumbel-family
//!   noise, the exact expectations in closed form (`E[phi(y*)] = softmax(theta / (sigma
//!   beta))`), with a tolerance of `z` standard errors from the sample size; I-MLE against the
//!   finite differences of the exact expected loss, allowing its exactly computed
//!   finite-`lambda` bias.
//!
//! A negative control wraps a correct estimator in a [`Mutant`] (a flipped sign, a missing
//! `1/lambda`, a sum instead of a mean over draws) and must make the same check fail.

use crate::report::Check;
use crate::theory::{log_zhat, softmax, GumbelFit};
use crate::util::{estimate_in_chunks, score_of, stats_per_entry, Classes, Solutions};
use dlm_core::error::{DlmError, Result};
use dlm_core::gradient::{Batch, Estimate, EstimatorState, GradientEstimator, NoiseKey};
use dlm_core::loss::{Loss, Target};
use dlm_core::noise::NoiseModel;
use dlm_core::rng::noise_rng;
use dlm_core::structure::StructuredArgmax;
use ndarray::{Array1, ArrayD, ArrayViewMutD, IxDyn};

/// A wrong variant of an estimator, for negative controls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mutation {
    /// `grad_theta` negated (a sign error).
    NegateTheta,
    /// `grad_theta` multiplied by a factor (e.g. `lambda`: a missing `1/lambda`; `draws`: a
    /// sum instead of a mean over draws; 0.5: a missing factor 2).
    ScaleTheta(f64),
    /// `grad_sigma` negated.
    NegateSigma,
    /// `grad_sigma` multiplied by a factor.
    ScaleSigma(f64),
}

/// An estimator whose output is deliberately wrong by a [`Mutation`]: a correct check must
/// fail on it.
#[derive(Debug, Clone)]
pub struct Mutant<E> {
    /// The correct estimator.
    pub inner: E,
    /// What is wrong with it.
    pub mutation: Mutation,
}

impl<E: GradientEstimator> GradientEstimator for Mutant<E> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn learns_sigma(&self) -> bool {
        self.inner.learns_sigma()
    }
    fn uses_noise(&self) -> bool {
        self.inner.uses_noise()
    }
    fn initial_state(&self) -> EstimatorState {
        self.inner.initial_state()
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
        let mut e = self
            .inner
            .estimate(state, structure, noise, loss, batch, key)?;
        match self.mutation {
            Mutation::NegateTheta => e.grad_theta.mapv_inplace(|v| -v),
            Mutation::ScaleTheta(f) => e.grad_theta.mapv_inplace(|v| v * f),
            Mutation::NegateSigma => e.grad_sigma.mapv_inplace(|v| -v),
            Mutation::ScaleSigma(f) => e.grad_sigma.mapv_inplace(|v| v * f),
        }
        Ok(e)
    }
}

/// The published formula of an estimator, for [`check_closed_form`]. With `y*_d =
/// argmax <theta + sigma gamma_d, phi>` and the task loss `l`:
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Formula {
    /// DLM at a fixed `epsilon` (the estimator must not escape: `escape = 1`):
    /// `mean_d (phi(y*_d(eps)) - phi(y*_d)) / eps` with `y*_d(eps) = argmax <theta + sigma
    /// gamma_d, phi(y)> + eps l(y)`, and `mean_d <gamma_d, phi(y*_d(eps)) - phi(y*_d)> / eps`
    /// for sigma.
    Dlm {
        /// `eps`.
        epsilon: f64,
        /// Draws per example.
        draws: usize,
    },
    /// Perturbed Fenchel-Young: `mean_d phi(y*_d) - phi(y_true)`, sigma: `mean_d <gamma_d,
    /// phi(y*_d)>`.
    FenchelYoung {
        /// Draws per example.
        draws: usize,
    },
    /// Blackbox interpolation (no noise): `(phi(y) - phi(y_lambda)) / lambda` with `y =
    /// argmax <theta, phi>`, `y_lambda = argmax <theta, phi(y)> - lambda l(y)`; sigma: 0.
    Blackbox {
        /// `lambda`.
        lambda: f64,
    },
    /// I-MLE: `mean_d (phi(z_d) - phi(z'_d)) / lambda` with `z_d = y*_d`, `z'_d = argmax
    /// <theta + sigma gamma_d, phi(y)> - lambda l(y)`; sigma: 0.
    Imle {
        /// `lambda`.
        lambda: f64,
        /// Draws per example.
        draws: usize,
    },
    /// SPO+ (no noise), true costs `c` in `Target.weights`: `2 (phi(w~) - phi(w*))` with `w* =
    /// argmax <-c, phi>`, `w~ = argmax <2 theta + c, phi>`; sigma: 0.
    SpoPlus,
}

/// The surrogate loss an estimator differentiates, for [`check_surrogate_fd`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Surrogate {
    /// `mean_d max_y <theta + sigma gamma_d, phi(y)> - <theta, phi(y_true)>` over the
    /// estimator's own draws (in `theta` and in `sigma`).
    FenchelYoung {
        /// Draws per example.
        draws: usize,
    },
    /// `max_w <2 theta - theta_true, phi(w)> - 2 <theta, phi(w*)> + <theta_true, phi(w*)>`,
    /// `theta_true = -c` from `Target.weights`, `w* = argmax <theta_true, phi>`.
    SpoPlus,
}

/// The estimator on a batch with a fresh [`GradientEstimator::initial_state`].
pub fn run(
    est: &dyn GradientEstimator,
    structure: &dyn StructuredArgmax,
    noise: &dyn NoiseModel,
    loss: &dyn Loss,
    batch: &Batch<'_>,
    key: NoiseKey,
) -> Result<Estimate> {
    let mut state = est.initial_state();
    est.estimate(&mut state, structure, noise, loss, batch, key)
}

/// The enumerated solutions of one example's shape (an error if the structure lists none).
fn solutions(structure: &dyn StructuredArgmax, inner: &[usize]) -> Result<Solutions> {
    let m: usize = inner.iter().product();
    let list = structure
        .enumerate(inner)?
        .ok_or_else(|| DlmError::Unsupported {
            component: format!("structure '{}'", structure.name()),
            what: format!("enumerate for shape {inner:?}"),
            hint: "the estimator checks compute their reference by brute force over the listed \
               solutions; use a structure and shape that enumerate returns"
                .into(),
        })?;
    if list.is_empty() {
        return Err(DlmError::invalid("enumerate", "listed no solution"));
    }
    if let Some(bad) = list.iter().find(|s| s.iter().any(|&i| i >= m)) {
        return Err(DlmError::invalid(
            "enumerate",
            format!("solution {bad:?} has an index >= {m}"),
        ));
    }
    Ok(Solutions::new(list, true))
}

/// The index of a maximiser of `<theta, phi(y)> + extra[y]` over the list (first on ties).
fn best_with(sol: &Solutions, theta: &[f64], extra: &[f64]) -> usize {
    let mut best = (f64::NEG_INFINITY, 0);
    for (k, y) in sol.list.iter().enumerate() {
        let v = score_of(theta, y) + extra[k];
        if v > best.0 {
            best = (v, k);
        }
    }
    best.1
}

/// One example's noise draw `d` (the counter-based contract).
fn draw(noise: &dyn NoiseModel, key: NoiseKey, id: u64, d: usize, m: usize) -> Result<Vec<f64>> {
    let mut g = vec![0.0; m];
    noise.sample(&mut noise_rng(key.seed, key.epoch, id, d as u64), &mut g)?;
    Ok(g)
}

fn add(g: &mut [f64], active: &[usize], w: f64) {
    for &i in active {
        g[i] += w;
    }
}

/// The formula's `(grad_theta, grad_sigma)` of example `b`, by brute force.
#[allow(clippy::too_many_arguments)]
fn formula_example(
    formula: Formula,
    sol: &Solutions,
    noise: &dyn NoiseModel,
    loss: &dyn Loss,
    inner: &[usize],
    theta: &[f64],
    sigma: f64,
    target: &Target,
    id: u64,
    key: NoiseKey,
) -> Result<(Vec<f64>, f64)> {
    let m = theta.len();
    let n = sol.list.len();
    let zeros = vec![0.0; n];
    let losses = |scale: f64| -> Result<Vec<f64>> {
        sol.list
            .iter()
            .map(|y| Ok(scale * loss.value(target, inner, y)?))
            .collect()
    };
    let perturbed = |g: &[f64]| -> Vec<f64> {
        theta
            .iter()
            .zip(g)
            .map(|(t, g)| t + sigma * g)
            .collect::<Vec<f64>>()
    };
    let mut g = vec![0.0; m];
    let mut gs = 0.0;
    match formula {
        Formula::Dlm { epsilon, draws } => {
            let aug = losses(epsilon)?;
            for d in 0..draws {
                let gamma = draw(noise, key, id, d, m)?;
                let p = perturbed(&gamma);
                let (y, ye) = (
                    &sol.list[best_with(sol, &p, &zeros)],
                    &sol.list[best_with(sol, &p, &aug)],
                );
                let w = 1.0 / (epsilon * draws as f64);
                add(&mut g, ye, w);
                add(&mut g, y, -w);
                gs += (score_of(&gamma, ye) - score_of(&gamma, y)) * w;
            }
        }
        Formula::FenchelYoung { draws } => {
            for d in 0..draws {
                let gamma = draw(noise, key, id, d, m)?;
                let y = &sol.list[best_with(sol, &perturbed(&gamma), &zeros)];
                add(&mut g, y, 1.0 / draws as f64);
                gs += score_of(&gamma, y) / draws as f64;
            }
            add(&mut g, &target.truth, -1.0);
        }
        Formula::Imle { lambda, draws } => {
            let shift = losses(-lambda)?;
            for d in 0..draws {
                let gamma = draw(noise, key, id, d, m)?;
                let p = perturbed(&gamma);
                let z = &sol.list[best_with(sol, &p, &zeros)];
                let zt = &sol.list[best_with(sol, &p, &shift)];
                add(&mut g, z, 1.0 / (lambda * draws as f64));
                add(&mut g, zt, -1.0 / (lambda * draws as f64));
            }
        }
        Formula::Blackbox { lambda } => {
            let shift = losses(-lambda)?;
            let y = &sol.list[best_with(sol, theta, &zeros)];
            let yl = &sol.list[best_with(sol, theta, &shift)];
            add(&mut g, y, 1.0 / lambda);
            add(&mut g, yl, -1.0 / lambda);
        }
        Formula::SpoPlus => {
            let c = true_costs(target, m)?;
            let truth: Vec<f64> = c.iter().map(|v| -v).collect();
            let tilde: Vec<f64> = theta.iter().zip(c).map(|(t, c)| 2.0 * t + c).collect();
            let ws = &sol.list[best_with(sol, &truth, &zeros)];
            let wt = &sol.list[best_with(sol, &tilde, &zeros)];
            add(&mut g, wt, 2.0);
            add(&mut g, ws, -2.0);
        }
    }
    Ok((g, gs))
}

fn true_costs(target: &Target, m: usize) -> Result<&[f64]> {
    if target.weights.len() != m {
        return Err(DlmError::invalid(
            "target weights",
            format!(
                "SPO+ reads the true costs from the weights: {m} expected, {} given",
                target.weights.len()
            ),
        ));
    }
    Ok(&target.weights)
}

/// Splits `theta` (`[B, ...]`) into per-example flat slices.
fn flat_examples(theta: &ArrayD<f64>) -> (Vec<usize>, Vec<f64>, usize) {
    let inner = theta.shape()[1..].to_vec();
    let m: usize = inner.iter().product();
    let flat = theta.as_standard_layout().iter().copied().collect();
    (inner, flat, m)
}

/// What the brute-force checks compare: the estimator's estimate on a batch, and the batch
/// laid out for the brute force.
struct BruteForce {
    /// The shape of one example's potentials.
    inner: Vec<usize>,
    /// The estimate (fresh state).
    e: Estimate,
    /// The potentials, flat, example after example.
    flat: Vec<f64>,
    /// Parts per example.
    m: usize,
    /// The enumerated solutions of one example's shape.
    sol: Solutions,
}

/// Checks the batch (`theta` `[B, ...]`, one `sigma`, target and id per example), runs the
/// estimator on it and enumerates the solutions of one example's shape.
#[allow(clippy::too_many_arguments)]
fn brute_force(
    est: &dyn GradientEstimator,
    structure: &dyn StructuredArgmax,
    noise: &dyn NoiseModel,
    loss: &dyn Loss,
    theta: &ArrayD<f64>,
    sigma: &[f64],
    targets: &[Target],
    example_ids: &[u64],
    key: NoiseKey,
) -> Result<BruteForce> {
    let sigma_arr = Array1::from_vec(sigma.to_vec());
    let batch = Batch {
        theta: theta.view(),
        sigma: sigma_arr.view(),
        targets,
        example_ids,
    };
    let inner = batch.check(structure)?;
    let e = run(est, structure, noise, loss, &batch, key)?;
    let (_, flat, m) = flat_examples(theta);
    let sol = solutions(structure, &inner)?;
    Ok(BruteForce {
        inner,
        e,
        flat,
        m,
        sol,
    })
}

/// The estimator's gradients on a batch against its published `formula` evaluated by brute
/// force over the structure's enumerated solutions with the same noise draws (see the
/// [module docs](self)). `theta` is `[B, ...]`, one `sigma`, target and id per example.
/// Deviation: the largest absolute difference over `grad_theta` and `grad_sigma`; tolerance
/// `1e-9 * max(1, largest |entry|)`. Solutions tied to rounding would make the brute force
/// and the solver disagree legitimately, so use generic (random, continuous) potentials.
#[allow(clippy::too_many_arguments)]
pub fn check_closed_form(
    est: &dyn GradientEstimator,
    formula: Formula,
    structure: &dyn StructuredArgmax,
    noise: &dyn NoiseModel,
    loss: &dyn Loss,
    theta: &ArrayD<f64>,
    sigma: &[f64],
    targets: &[Target],
    example_ids: &[u64],
    key: NoiseKey,
) -> Result<Check> {
    let BruteForce {
        inner,
        e,
        flat,
        m,
        sol,
    } = brute_force(
        est,
        structure,
        noise,
        loss,
        theta,
        sigma,
        targets,
        example_ids,
        key,
    )?;
    let got = e.grad_theta.as_standard_layout();
    let got = got.as_slice().expect("standard layout");
    let mut entries = Vec::new();
    let mut scale = 1.0f64;
    for b in 0..targets.len() {
        let (g, gs) = formula_example(
            formula,
            &sol,
            noise,
            loss,
            &inner,
            &flat[b * m..(b + 1) * m],
            sigma[b],
            &targets[b],
            example_ids[b],
            key,
        )?;
        for (k, &want) in g.iter().enumerate() {
            scale = scale.max(want.abs());
            entries.push((
                (got[b * m + k] - want).abs(),
                format!(
                    "example {b}, d/dtheta_{k}: estimator {:.6} vs formula {want:.6}",
                    got[b * m + k]
                ),
            ));
        }
        scale = scale.max(gs.abs());
        entries.push((
            (e.grad_sigma[b] - gs).abs(),
            format!(
                "example {b}, d/dsigma: estimator {:.6} vs formula {gs:.6}",
                e.grad_sigma[b]
            ),
        ));
    }
    let tol = 1e-9 * scale;
    let rows: Vec<(f64, f64, String)> = entries.into_iter().map(|(d, s)| (d, tol, s)).collect();
    Ok(Check::worst(
        &format!(
            "estimator '{}' = closed form {formula:?} by brute force ({} {inner:?}, {} examples)",
            est.name(),
            structure.name(),
            targets.len()
        ),
        targets.len(),
        &rows,
    ))
}

/// The surrogate's value for example `b` at potentials `th` and scale `s`, with the index of
/// the maximiser of each max term (to detect kinks), and the per-draw noise.
struct SurrogateEval<'a> {
    surrogate: Surrogate,
    sol: &'a Solutions,
    target: &'a Target,
    gammas: Vec<Vec<f64>>,
}

impl SurrogateEval<'_> {
    /// Value, and the maximiser index of each max term.
    fn value(&self, th: &[f64], s: f64) -> Result<(f64, Vec<usize>)> {
        let zeros = vec![0.0; self.sol.list.len()];
        match self.surrogate {
            Surrogate::FenchelYoung { .. } => {
                let n = self.gammas.len() as f64;
                let mut v = 0.0;
                let mut arg = Vec::with_capacity(self.gammas.len());
                for gamma in &self.gammas {
                    let p: Vec<f64> = th.iter().zip(gamma).map(|(t, g)| t + s * g).collect();
                    let k = best_with(self.sol, &p, &zeros);
                    v += score_of(&p, &self.sol.list[k]) / n;
                    arg.push(k);
                }
                Ok((v - score_of(th, &self.target.truth), arg))
            }
            Surrogate::SpoPlus => {
                let c = true_costs(self.target, th.len())?;
                let truth: Vec<f64> = c.iter().map(|v| -v).collect();
                let tilde: Vec<f64> = th.iter().zip(c).map(|(t, c)| 2.0 * t + c).collect();
                let ws = &self.sol.list[best_with(self.sol, &truth, &zeros)];
                let k = best_with(self.sol, &tilde, &zeros);
                let v = score_of(&tilde, &self.sol.list[k]) - 2.0 * score_of(th, ws)
                    + score_of(&truth, ws);
                Ok((v, vec![k]))
            }
        }
    }
}

/// The estimator's gradients on a batch against central finite differences (step `h`) of its
/// own surrogate loss (see [`Surrogate`] and the [module docs](self)), computed by brute force
/// over the enumerated solutions with the estimator's own noise draws: one row for
/// `grad_theta` and, for the Fenchel-Young loss, one for `grad_sigma`.
///
/// The surrogates are piecewise linear (means of maxima of functions linear in `theta` and
/// `sigma`), so the difference quotient is exact unless a maximiser changes between `-h` and
/// `+h`; such draws are counted and the tolerance grows by the most their slope can differ
/// (per draw: 1 for an FY `theta` entry, 2 for SPO+, the range of `<gamma, phi(y)>` over the
/// solutions for sigma), plus `1e-6` for rounding.
#[allow(clippy::too_many_arguments)]
pub fn check_surrogate_fd(
    est: &dyn GradientEstimator,
    surrogate: Surrogate,
    structure: &dyn StructuredArgmax,
    noise: &dyn NoiseModel,
    loss: &dyn Loss,
    theta: &ArrayD<f64>,
    sigma: &[f64],
    targets: &[Target],
    example_ids: &[u64],
    key: NoiseKey,
    h: f64,
) -> Result<Vec<Check>> {
    if !(h.is_finite() && h > 0.0) {
        return Err(DlmError::invalid("h", "the step must be finite and > 0"));
    }
    let BruteForce {
        inner,
        e,
        flat,
        m,
        sol,
    } = brute_force(
        est,
        structure,
        noise,
        loss,
        theta,
        sigma,
        targets,
        example_ids,
        key,
    )?;
    let got = e.grad_theta.as_standard_layout();
    let got = got.as_slice().expect("standard layout");
    let mut theta_rows = Vec::new();
    let mut sigma_rows = Vec::new();
    let mut kinks = 0;
    for b in 0..targets.len() {
        let th = &flat[b * m..(b + 1) * m];
        let gammas = match surrogate {
            Surrogate::FenchelYoung { draws } => (0..draws)
                .map(|d| draw(noise, key, example_ids[b], d, m))
                .collect::<Result<Vec<_>>>()?,
            Surrogate::SpoPlus => Vec::new(),
        };
        let ev = SurrogateEval {
            surrogate,
            sol: &sol,
            target: &targets[b],
            gammas,
        };
        let per_draw = match surrogate {
            Surrogate::FenchelYoung { draws } => 1.0 / draws as f64,
            Surrogate::SpoPlus => 2.0,
        };
        for k in 0..m {
            let mut up = th.to_vec();
            let mut dn = th.to_vec();
            up[k] += h;
            dn[k] -= h;
            let (vu, au) = ev.value(&up, sigma[b])?;
            let (vd, ad) = ev.value(&dn, sigma[b])?;
            let fd = (vu - vd) / (2.0 * h);
            let switched = au.iter().zip(&ad).filter(|(a, b)| a != b).count();
            kinks += switched;
            theta_rows.push((
                (got[b * m + k] - fd).abs(),
                1e-6 + switched as f64 * per_draw,
                format!(
                    "example {b}, d/dtheta_{k}: estimator {:.6} vs FD {fd:.6} ({switched} kinks)",
                    got[b * m + k]
                ),
            ));
        }
        if let Surrogate::FenchelYoung { draws } = surrogate {
            let s = sigma[b];
            let (vu, au) = ev.value(th, s + h)?;
            let (vd, ad) = ev.value(th, (s - h).max(0.0))?;
            let fd = (vu - vd) / (s + h - (s - h).max(0.0));
            let mut slack = 1e-6;
            for (d, (a, bb)) in au.iter().zip(&ad).enumerate() {
                if a != bb {
                    kinks += 1;
                    let g = &ev.gammas[d];
                    let (lo, hi) = sol
                        .list
                        .iter()
                        .map(|y| score_of(g, y))
                        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                            (lo.min(v), hi.max(v))
                        });
                    slack += (hi - lo) / draws as f64;
                }
            }
            sigma_rows.push((
                (e.grad_sigma[b] - fd).abs(),
                slack,
                format!(
                    "example {b}, d/dsigma: estimator {:.6} vs FD {fd:.6}",
                    e.grad_sigma[b]
                ),
            ));
        }
    }
    let what = format!(
        "estimator '{}' = FD of its surrogate {surrogate:?} ({} {inner:?}, {} examples, h {h}, \
         {kinks} kinks)",
        est.name(),
        structure.name(),
        targets.len()
    );
    let mut checks = vec![Check::worst(
        &format!("{what}: theta"),
        targets.len(),
        &theta_rows,
    )];
    if !sigma_rows.is_empty() {
        checks.push(Check::worst(
            &format!("{what}: sigma"),
            targets.len(),
            &sigma_rows,
        ));
    }
    Ok(checks)
}

/// The kit's 0/1 loss on classes: `l = [y != t]`, linear with `L = -e_t`, `c = 1`.
struct ClassMiss;

impl Loss for ClassMiss {
    fn name(&self) -> &str {
        "class miss (kit)"
    }
    fn value(&self, t: &Target, _shape: &[usize], active: &[usize]) -> Result<f64> {
        Ok(if active == t.truth.as_slice() {
            0.0
        } else {
            1.0
        })
    }
    fn linear_form(&self, t: &Target, mut out: ArrayViewMutD<'_, f64>) -> Result<Option<f64>> {
        out.fill(0.0);
        let s = out.as_slice_mut().expect("contiguous");
        let &[c] = t.truth.as_slice() else {
            return Err(DlmError::invalid("class target", "one true class expected"));
        };
        if c >= s.len() {
            return Err(DlmError::invalid("class target", "class out of range"));
        }
        s[c] = -1.0;
        Ok(Some(1.0))
    }
}

/// Per entry of `grad_theta` and for `grad_sigma`: (mean, standard error) over `chunks` runs
/// of the estimator (epochs `0..chunks` of `seed`) on one example.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkStats {
    /// Per entry of the potentials.
    pub theta: Vec<(f64, f64)>,
    /// For sigma.
    pub sigma: (f64, f64),
}

/// Runs `est` on the single example `theta` (`[...]`, no batch axis) in `chunks` independent
/// batches (epochs `0..chunks` of `seed`) and returns the mean and standard error of each
/// gradient entry across them.
#[allow(clippy::too_many_arguments)]
pub fn chunk_stats(
    est: &dyn GradientEstimator,
    structure: &dyn StructuredArgmax,
    noise: &dyn NoiseModel,
    loss: &dyn Loss,
    theta: &ArrayD<f64>,
    sigma: f64,
    target: &Target,
    chunks: usize,
    seed: u64,
) -> Result<ChunkStats> {
    if chunks < 2 {
        return Err(DlmError::invalid(
            "chunks",
            "at least 2 for a standard error",
        ));
    }
    let results = estimate_in_chunks(theta, sigma, target, chunks, seed, |batch, key| {
        est.estimate(&mut est.initial_state(), structure, noise, loss, batch, key)
    })?;
    let stats = |v: Vec<f64>| {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, (var / n).sqrt())
    };
    let (theta, sigma) = stats_per_entry(&results, theta.len(), stats);
    Ok(ChunkStats { theta, sigma })
}

fn gumbel_fit(noise: &dyn NoiseModel) -> Result<GumbelFit> {
    GumbelFit::of(noise).map_err(|why| {
        DlmError::invalid(
            "noise",
            format!("the exact class checks need Gumbel-family noise: {why}"),
        )
    })
}

fn class_theta(theta: &[f64], true_class: usize) -> Result<(ArrayD<f64>, Target)> {
    if true_class >= theta.len() {
        return Err(DlmError::invalid(
            "true class",
            format!("{true_class} for {} classes", theta.len()),
        ));
    }
    Ok((
        ArrayD::from_shape_vec(IxDyn(&[theta.len()]), theta.to_vec()).expect("1-d"),
        Target {
            truth: vec![true_class],
            weights: vec![],
        },
    ))
}

/// The Fenchel-Young estimator on the kit's multiclass argmax with Gumbel-family `noise`
/// against its exact expectation: `E[grad_theta] = softmax(theta / (sigma beta)) -
/// e_true_class` and `E[grad_sigma] = E[gamma_{y*}] = beta sum_y p_y (log Zhat - theta_y /
/// (sigma beta)) + mean` (the derivative of `E max_y theta_y + sigma gamma_y`), at the noise's
/// own scale `beta` ([`GumbelFit`]). Tolerance: `z` standard errors over `chunks` runs.
#[allow(clippy::too_many_arguments)]
pub fn check_fy_classes(
    est: &dyn GradientEstimator,
    noise: &dyn NoiseModel,
    theta: &[f64],
    sigma: f64,
    true_class: usize,
    chunks: usize,
    seed: u64,
    z: f64,
) -> Result<Check> {
    let fit = gumbel_fit(noise)?;
    let (th, target) = class_theta(theta, true_class)?;
    let st = chunk_stats(
        est, &Classes, noise, &ClassMiss, &th, sigma, &target, chunks, seed,
    )?;
    let t = fit.temperature(sigma);
    let p = softmax(theta, t);
    let lz = log_zhat(theta, t);
    let exact_sigma = fit.scale
        * p.iter()
            .zip(theta)
            .map(|(p, v)| p * (lz - v / t))
            .sum::<f64>()
        + noise.mean();
    let mut entries: Vec<(f64, f64, String)> = (0..theta.len())
        .map(|k| {
            let want = p[k] - if k == true_class { 1.0 } else { 0.0 };
            (
                (st.theta[k].0 - want).abs(),
                z * st.theta[k].1 + 1e-12,
                format!(
                    "d/dtheta_{k}: estimator {:.5} +- {:.5} vs exact {want:.5}",
                    st.theta[k].0, st.theta[k].1
                ),
            )
        })
        .collect();
    entries.push((
        (st.sigma.0 - exact_sigma).abs(),
        z * st.sigma.1 + 1e-12,
        format!(
            "d/dsigma: estimator {:.5} +- {:.5} vs exact {exact_sigma:.5}",
            st.sigma.0, st.sigma.1
        ),
    ));
    Ok(Check::worst(
        &format!(
            "estimator '{}' = exact Fenchel-Young gradient (argmax, {})",
            est.name(),
            noise.name()
        ),
        chunks,
        &entries,
    ))
}

/// The I-MLE estimator (with the 0/1 loss, `L = -e_true_class`) on the kit's multiclass
/// argmax with Gumbel-family `noise` against the finite differences of the exact expected
/// loss `sum_y softmax(theta / T)_y [y != t]` (`T = sigma beta`), the smoothed loss it
/// approximates; the tolerance is `z` standard errors plus its exactly computed bias at this
/// `lambda` (its expectation is `(softmax(theta / T) - softmax((theta + lambda e_t) / T)) /
/// lambda`). Only `grad_theta` is compared.
#[allow(clippy::too_many_arguments)]
pub fn check_imle_classes(
    est: &dyn GradientEstimator,
    noise: &dyn NoiseModel,
    theta: &[f64],
    sigma: f64,
    true_class: usize,
    lambda: f64,
    chunks: usize,
    seed: u64,
    z: f64,
) -> Result<Check> {
    let fit = gumbel_fit(noise)?;
    let (th, target) = class_theta(theta, true_class)?;
    let st = chunk_stats(
        est, &Classes, noise, &ClassMiss, &th, sigma, &target, chunks, seed,
    )?;
    let t = fit.temperature(sigma);
    let expected_loss = |x: &[f64]| 1.0 - softmax(x, t)[true_class];
    let hstep = 1e-5;
    let shifted: Vec<f64> = theta
        .iter()
        .enumerate()
        .map(|(k, v)| if k == true_class { v + lambda } else { *v })
        .collect();
    let (p, ps) = (softmax(theta, t), softmax(&shifted, t));
    let entries: Vec<(f64, f64, String)> = (0..theta.len())
        .map(|k| {
            let mut up = theta.to_vec();
            let mut dn = theta.to_vec();
            up[k] += hstep;
            dn[k] -= hstep;
            let fd = (expected_loss(&up) - expected_loss(&dn)) / (2.0 * hstep);
            let exact = (p[k] - ps[k]) / lambda;
            (
                (st.theta[k].0 - fd).abs(),
                z * st.theta[k].1 + (exact - fd).abs() + 1e-9,
                format!(
                    "d/dtheta_{k}: estimator {:.5} +- {:.5} (exact at lambda {lambda}: \
                     {exact:.5}) vs FD of the expected loss {fd:.5}",
                    st.theta[k].0, st.theta[k].1
                ),
            )
        })
        .collect();
    Ok(Check::worst(
        &format!(
            "estimator '{}' = FD of the smoothed loss (argmax, {}, lambda {lambda})",
            est.name(),
            noise.name()
        ),
        chunks,
        &entries,
    ))
}
