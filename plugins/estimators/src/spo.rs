//! The SPO+ loss (Elmachtoub & Grigas 2022, *Smart "Predict, then Optimize"*).

use crate::common::{add_difference, solve_each, Flat};
use dlm_core::gradient::{Batch, Diagnostics, Estimate, EstimatorState, GradientEstimator};
use dlm_core::{Config, DlmError, Loss, NoiseKey, NoiseModel, Result, StructuredArgmax};
use ndarray::Array1;

/// The SPO+ surrogate for tasks with true cost vectors, registered as `spo+` (no options).
///
/// **Target convention:** `Target.weights` holds the example's true cost vector `c`, one
/// entry per part of the structure (the potentials' length, in flat row-major order); the
/// true potentials are `theta = -c`. The network's potentials `theta_hat` are the negated
/// predicted costs, `c_hat = -theta_hat`.
///
/// The paper (minimisation, `w*(c) = argmin_w <c, w>`, `z*(c) = <c, w*(c)>`) defines
///
/// ```text
///   l_SPO+(c_hat, c) = max_w <c - 2 c_hat, w> + 2 <c_hat, w*(c)> - z*(c)
/// ```
///
/// with subgradient `2 (w*(c) - w~)` in `c_hat`, where `w~ = argmax_w <c - 2 c_hat, w>`. In
/// this crate's convention (`c = -theta`, `c_hat = -theta_hat`):
///
/// ```text
///   w*  = argmax <theta, phi(w)>                    (= argmin <c, w>)
///   w~  = argmax <2 theta_hat - theta, phi(w)>      (= argmax <c - 2 c_hat, w>)
///   l   = <2 theta_hat - theta, phi(w~)> - 2 <theta_hat, phi(w*)> + <theta, phi(w*)>  (>= 0)
///   grad_theta = 2 (phi(w~) - phi(w*))              (= -(d l / d c_hat))
/// ```
///
/// Descending it raises the potentials of the parts of `w*` (the true optimum) and lowers
/// those of `w~`: `theta_hat` moves towards potentials whose optimum is `w*`.
/// [`Estimate::loss`] is the task loss of the prediction `argmax <theta_hat, phi>` (e.g. the
/// regret); the task loss is not used for the gradient. No noise (the noise model and
/// `sigma` are ignored), no sigma gradient (zeros). Three solves per example.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpoPlus;

impl SpoPlus {
    /// No options.
    pub fn from_config(_c: &Config) -> Result<Self> {
        Ok(SpoPlus)
    }
}

#[derive(Debug, Default, Clone)]
struct Example {
    truth: Vec<f64>,
    tilde: Vec<f64>,
    w_star: Vec<usize>,
    w_tilde: Vec<usize>,
    predicted: Vec<usize>,
    loss: f64,
}

/// Buffers kept in the estimator state between calls.
#[derive(Debug, Default, Clone)]
struct Scratch {
    examples: Vec<Example>,
}

impl GradientEstimator for SpoPlus {
    fn name(&self) -> &str {
        "spo+"
    }

    fn learns_sigma(&self) -> bool {
        false
    }

    fn uses_noise(&self) -> bool {
        false
    }

    fn estimate(
        &self,
        state: &mut EstimatorState,
        structure: &dyn StructuredArgmax,
        _noise: &dyn NoiseModel,
        loss: &dyn Loss,
        batch: &Batch<'_>,
        _key: NoiseKey,
    ) -> Result<Estimate> {
        let flat = Flat::new(batch, structure)?;
        let (m, b_count, inner) = (flat.m, flat.b_count, &flat.inner);
        for (b, t) in batch.targets.iter().enumerate() {
            if t.weights.len() != m {
                return Err(DlmError::invalid(
                    format!("target of example {b}"),
                    format!(
                        "estimator 'spo+' reads the true cost vector from the target's weights, \
                         one cost per part ({m} for potentials of shape {inner:?}), but it has {}",
                        t.weights.len()
                    ),
                ));
            }
            dlm_core::ensure_finite(&format!("true costs (weights) of example {b}"), &t.weights)?;
        }
        let scratch = state.scratch::<Scratch>();
        let examples = solve_each(&mut scratch.examples, b_count, 1, |b, e| {
            let th = flat.theta(b);
            let c = &batch.targets[b].weights;
            e.truth.clear();
            e.truth.extend(c.iter().map(|&v| -v));
            e.tilde.clear();
            e.tilde
                .extend(th.iter().zip(c).map(|(&t, &ci)| 2.0 * t + ci));
            structure.argmax(flat.view(&e.truth), &mut e.w_star)?;
            structure.argmax(flat.view(&e.tilde), &mut e.w_tilde)?;
            structure.argmax(flat.view(th), &mut e.predicted)?;
            e.loss = loss.value(&batch.targets[b], inner, &e.predicted)?;
            Ok(())
        })?;

        let mut loss_out = Array1::<f64>::zeros(b_count);
        let mut zero_directions = 0;
        let grad_theta = flat.reduce(examples, 1, |b, e, g| {
            loss_out[b] = e.loss;
            if !add_difference(g, &e.w_tilde, &e.w_star, 2.0) {
                zero_directions += 1;
            }
        });
        Ok(Estimate {
            grad_theta,
            grad_sigma: Array1::zeros(b_count),
            loss: loss_out,
            diagnostics: Diagnostics {
                epsilon: 0.0,
                zero_directions,
                total_draws: b_count,
                escapes: 0,
            },
        })
    }
}
