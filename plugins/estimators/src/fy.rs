//! The perturbed Fenchel-Young loss (Berthet et al. 2020, *Learning with Differentiable
//! Perturbed Optimizers*).

use crate::common::{check_draws, check_truths, draws_option};
use dlm_core::gradient::{Batch, Diagnostics, Estimate, EstimatorState, GradientEstimator};
use dlm_core::rng::noise_rng;
use dlm_core::{Config, Loss, NoiseKey, NoiseModel, Result, StructuredArgmax};
use ndarray::{Array1, ArrayD, ArrayViewD, IxDyn};
use rayon::prelude::*;

/// The perturbed Fenchel-Young loss, registered as `fy` (option `draws`, default 5).
///
/// With `F_sigma(theta) = E_gamma[max_y <theta + sigma gamma, phi(y)>]` and
/// `y*_d = argmax_y <theta + sigma gamma_d, phi(y)>` for draws `gamma_d` of the noise model:
///
/// ```text
///   loss (minimised)  l(theta, sigma) = F_sigma(theta) - <theta, phi(y_true)>   (+ sigma Omega(y_true))
///   grad_theta = mean_d phi(y*_d) - phi(y_true)        (-> E[phi(y*)] - phi(y_true), Berthet et al.)
///   grad_sigma = mean_d <gamma_d, phi(y*_d)>           (-> d F_sigma / d sigma, envelope theorem)
/// ```
///
/// The task loss is not used for the gradient (only `Target.truth`, which must be the active
/// set of the true structure); [`Estimate::loss`] reports the task loss of the `y*_d`.
/// Descending `grad_theta` raises the potentials of the true parts and lowers those the
/// perturbed solutions pick: `theta` moves towards `y_true`.
///
/// # The sigma gradient, honestly
/// `grad_sigma` differentiates `F_sigma(theta) - <theta, phi(y_true)>`, the part of the
/// Fenchel-Young loss that can be evaluated by sampling; the full loss also has
/// `sigma Omega(y_true)` (the conjugate of `F_1` at the truth), which is left out. For
/// zero-mean noise, `sigma -> F_sigma(theta)` is convex (an expected maximum of functions
/// linear in sigma) with slope `<E gamma, phi(y*)> = 0` at `sigma = 0`, hence non-decreasing:
/// `grad_sigma` is `>= 0` in expectation and **pushes sigma down**. Trained with it, a learned
/// sigma shrinks towards 0, where the estimator becomes the structured perceptron. It is exact for
/// what it differentiates (the tests check it against finite differences), but it is not a
/// criterion for choosing the noise scale; prefer a fixed sigma with `fy` unless that
/// shrinking is what you want.
#[derive(Debug, Clone, PartialEq)]
pub struct FenchelYoung {
    /// Noise draws per example (>= 1).
    pub draws: usize,
}

impl Default for FenchelYoung {
    fn default() -> Self {
        FenchelYoung { draws: 5 }
    }
}

impl FenchelYoung {
    /// From the options `draws=5`.
    pub fn from_config(c: &Config) -> Result<Self> {
        Ok(FenchelYoung {
            draws: draws_option(c, "fy", 5)?,
        })
    }

    /// Validates the settings.
    pub fn validate(&self) -> Result<()> {
        check_draws("fy", self.draws)
    }
}

#[derive(Debug, Default, Clone)]
struct Pair {
    gamma: Vec<f64>,
    pert: Vec<f64>,
    y: Vec<usize>,
    loss: f64,
}

/// Buffers kept in the estimator state between calls.
#[derive(Debug, Default, Clone)]
struct Scratch {
    pairs: Vec<Pair>,
}

impl GradientEstimator for FenchelYoung {
    fn name(&self) -> &str {
        "fy"
    }

    /// True, with the caveat of the type's docs: the gradient pushes sigma down.
    fn learns_sigma(&self) -> bool {
        true
    }

    fn uses_noise(&self) -> bool {
        true
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
        self.validate()?;
        let inner = batch.check(structure)?;
        let m: usize = inner.iter().product();
        let b_count = batch.targets.len();
        check_truths("fy", batch.targets, m)?;
        let theta_std = batch.theta.as_standard_layout();
        let theta = theta_std.as_slice().expect("standard layout");

        let draws = self.draws;
        let n_pairs = b_count * draws;
        let scratch = state.scratch::<Scratch>();
        if scratch.pairs.len() < n_pairs {
            scratch.pairs.resize_with(n_pairs, Pair::default);
        }
        let pairs = &mut scratch.pairs[..n_pairs];
        pairs
            .par_iter_mut()
            .enumerate()
            .with_min_len(4)
            .try_for_each(|(k, p)| -> Result<()> {
                let (b, d) = (k / draws, k % draws);
                p.gamma.resize(m, 0.0);
                p.pert.resize(m, 0.0);
                let mut rng = noise_rng(key.seed, key.epoch, batch.example_ids[b], d as u64);
                noise.sample(&mut rng, &mut p.gamma)?;
                let s = batch.sigma[b];
                let th = &theta[b * m..(b + 1) * m];
                for ((q, &t), &g) in p.pert.iter_mut().zip(th).zip(&p.gamma) {
                    *q = t + s * g;
                }
                let pert = ArrayViewD::from_shape(IxDyn(&inner), &p.pert[..]).expect("shape");
                structure.argmax(pert, &mut p.y)?;
                p.loss = loss.value(&batch.targets[b], &inner, &p.y)?;
                Ok(())
            })?;

        // Reduce in a fixed order.
        let mut full_shape = vec![b_count];
        full_shape.extend_from_slice(&inner);
        let mut grad_theta = ArrayD::<f64>::zeros(IxDyn(&full_shape));
        let mut grad_sigma = Array1::<f64>::zeros(b_count);
        let mut loss_mean = Array1::<f64>::zeros(b_count);
        let gt = grad_theta
            .as_slice_mut()
            .expect("fresh array is contiguous");
        let w = 1.0 / draws as f64;
        let mut zero_directions = 0;
        for (k, p) in pairs.iter().enumerate() {
            let b = k / draws;
            loss_mean[b] += p.loss * w;
            let g = &mut gt[b * m..(b + 1) * m];
            let mut dot = 0.0;
            for &i in &p.y {
                g[i] += w;
                dot += p.gamma[i];
            }
            grad_sigma[b] += dot * w;
            if p.y == batch.targets[b].truth {
                zero_directions += 1;
            }
        }
        for (b, t) in batch.targets.iter().enumerate() {
            let g = &mut gt[b * m..(b + 1) * m];
            for &i in &t.truth {
                g[i] -= 1.0;
            }
        }
        Ok(Estimate {
            grad_theta,
            grad_sigma,
            loss: loss_mean,
            diagnostics: Diagnostics {
                epsilon: 0.0,
                zero_directions,
                total_draws: n_pairs,
                escapes: 0,
            },
        })
    }
}
