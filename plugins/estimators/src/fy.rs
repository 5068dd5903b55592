//! The perturbed Fenchel-Young loss (Berthet et al. 2020, *Learning with Differentiable
//! Perturbed Optimizers*).

use crate::common::{check_draws, check_truths, draws_option, solve_each, Draw, Flat};
use dlm_core::gradient::{Batch, Diagnostics, Estimate, EstimatorState, GradientEstimator};
use dlm_core::{Config, Loss, NoiseKey, NoiseModel, Result, StructuredArgmax};
use ndarray::Array1;

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
    draw: Draw,
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
        let flat = Flat::new(batch, structure)?;
        let (m, b_count) = (flat.m, flat.b_count);
        check_truths("fy", batch.targets, m)?;

        let draws = self.draws;
        let n_pairs = b_count * draws;
        let scratch = state.scratch::<Scratch>();
        let pairs = solve_each(&mut scratch.pairs, n_pairs, 4, |k, p| {
            let (b, d) = (k / draws, k % draws);
            p.draw.sample(&flat, noise, key, b, d)?;
            structure.argmax(flat.view(&p.draw.pert), &mut p.y)?;
            p.loss = loss.value(&batch.targets[b], &flat.inner, &p.y)?;
            Ok(())
        })?;

        // Reduce in a fixed order.
        let mut grad_sigma = Array1::<f64>::zeros(b_count);
        let mut loss_mean = Array1::<f64>::zeros(b_count);
        let w = 1.0 / draws as f64;
        let mut zero_directions = 0;
        let mut grad_theta = flat.reduce(pairs, draws, |b, p, g| {
            loss_mean[b] += p.loss * w;
            let mut dot = 0.0;
            for &i in &p.y {
                g[i] += w;
                dot += p.draw.gamma[i];
            }
            grad_sigma[b] += dot * w;
            if p.y == batch.targets[b].truth {
                zero_directions += 1;
            }
        });
        let gt = grad_theta
            .as_slice_mut()
            .expect("fresh array is contiguous");
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
