//! The SPO+ loss (Elmachtoub & Grigas 2022, *Smart "Predict, then Optimize"*).

use dlm_core::gradient::{Batch, Diagnostics, Estimate, EstimatorState, GradientEstimator};
use dlm_core::profile;
use dlm_core::{Config, DlmError, Loss, NoiseKey, NoiseModel, Result, StructuredArgmax};
use ndarray::{Array1, ArrayD, ArrayViewD, IxDyn};
use rayon::prelude::*;
use std::time::Instant;

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
    /// `--profile`: nanoseconds of the plain solve (`theta_hat`), the other two and the rest.
    nanos: [u64; 3],
}

/// Buffers kept in the estimator state between calls.
#[derive(Debug, Default, Clone)]
struct Scratch {
    examples: Vec<Example>,
}

fn view<'a>(shape: &[usize], v: &'a [f64]) -> ArrayViewD<'a, f64> {
    ArrayViewD::from_shape(IxDyn(shape), v).expect("shape")
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
        let inner = batch.check(structure)?;
        let m: usize = inner.iter().product();
        let b_count = batch.targets.len();
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
        let theta_std = batch.theta.as_standard_layout();
        let theta_hat = theta_std.as_slice().expect("standard layout");
        let scratch = state.scratch::<Scratch>();
        if scratch.examples.len() < b_count {
            scratch.examples.resize_with(b_count, Example::default);
        }
        let examples = &mut scratch.examples[..b_count];
        let prof = profile::enabled();
        let clock = || prof.then(Instant::now);
        let region = clock();
        examples
            .par_iter_mut()
            .enumerate()
            .try_for_each(|(b, e)| -> Result<()> {
                let t0 = clock();
                let th = &theta_hat[b * m..(b + 1) * m];
                let c = &batch.targets[b].weights;
                e.truth.clear();
                e.truth.extend(c.iter().map(|&v| -v));
                e.tilde.clear();
                e.tilde
                    .extend(th.iter().zip(c).map(|(&t, &ci)| 2.0 * t + ci));
                let t1 = clock();
                structure.argmax(view(&inner, &e.truth), &mut e.w_star)?;
                structure.argmax(view(&inner, &e.tilde), &mut e.w_tilde)?;
                let t2 = clock();
                structure.argmax(view(&inner, th), &mut e.predicted)?;
                let t3 = clock();
                e.loss = loss.value(&batch.targets[b], &inner, &e.predicted)?;
                if let (Some(t0), Some(t1), Some(t2), Some(t3)) = (t0, t1, t2, t3) {
                    let ns = |a: Instant, b: Instant| (b - a).as_nanos() as u64;
                    e.nanos = [ns(t2, t3), ns(t1, t2), ns(t0, t1) + ns(t3, Instant::now())];
                }
                Ok(())
            })?;
        if prof {
            profile::add_region(region);
            let phases = [
                profile::Phase::PlainSolves,
                profile::Phase::AugmentedSolves,
                profile::Phase::Bookkeeping,
            ];
            for (i, phase) in phases.into_iter().enumerate() {
                profile::add_thread(phase, examples.iter().map(|e| e.nanos[i]).sum());
            }
            profile::count_solves(3 * b_count as u64);
        }

        let mut full_shape = vec![b_count];
        full_shape.extend_from_slice(&inner);
        let mut grad_theta = ArrayD::<f64>::zeros(IxDyn(&full_shape));
        let mut loss_out = Array1::<f64>::zeros(b_count);
        let gt = grad_theta
            .as_slice_mut()
            .expect("fresh array is contiguous");
        let mut zero_directions = 0;
        for (b, e) in examples.iter().enumerate() {
            loss_out[b] = e.loss;
            if e.w_star == e.w_tilde {
                zero_directions += 1;
                continue;
            }
            let g = &mut gt[b * m..(b + 1) * m];
            for &i in &e.w_tilde {
                g[i] += 2.0;
            }
            for &i in &e.w_star {
                g[i] -= 2.0;
            }
        }
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
