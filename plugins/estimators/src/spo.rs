//! The SPO+ loss (Elmachtoub & Grigas 2022, *Smart "Predict, then Optimize"*).

use dlm_core::gradient::{Batch, Diagnostics, Estimate, EstimatorState, GradientEstimator};
use dlm_core::profile;
use dlm_core::{Config, DlmError, Loss, NoiseKey, NoiseModel, Result, StructuredArgmax};
use ndarray::{Array1, ArrayD, ArrayViewD, IxDyn};
use rayon::prelude::*;
use std::collections::HashMap;
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
/// `sigma` are ignored), no sigma gradient (zeros). Three solves per example, two once the
/// example has been seen: `w*` depends on the true costs alone and is kept in the state's
/// scratch, by example id, with its costs (reused only when they are equal, bit for bit;
/// at most [`MAX_CACHED_VALUES`] costs in all).
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
    /// Whether `w_star` came from the cache (else it is solved and then cached).
    cached: bool,
    /// `--profile`: nanoseconds of the plain solve (`theta_hat`), the other two and the rest.
    nanos: [u64; 3],
}

/// Buffers kept in the estimator state between calls.
#[derive(Debug, Default, Clone)]
struct Scratch {
    examples: Vec<Example>,
    /// `w*` of the true costs of each example id seen: (costs, `w*`).
    optima: HashMap<u64, (Vec<f64>, Vec<usize>)>,
    /// Costs held by `optima`.
    cached_values: usize,
}

/// Most true-cost values SPO+'s cache of optima holds (16 Mi, 128 MiB); examples beyond it
/// are solved every time.
pub const MAX_CACHED_VALUES: usize = 1 << 24;

/// Whether two vectors hold the same numbers, bit for bit.
fn same_bits(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
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
            // (The message is formatted only for a bad example.)
            if dlm_core::ensure_finite("", &t.weights).is_err() {
                dlm_core::ensure_finite(
                    &format!("true costs (weights) of example {b}"),
                    &t.weights,
                )?;
            }
        }
        let theta_std = batch.theta.as_standard_layout();
        let theta_hat = theta_std.as_slice().expect("standard layout");
        let scratch = state.scratch::<Scratch>();
        if scratch.examples.len() < b_count {
            scratch.examples.resize_with(b_count, Example::default);
        }
        let Scratch {
            examples,
            optima,
            cached_values,
        } = scratch;
        let examples = &mut examples[..b_count];
        for (b, e) in examples.iter_mut().enumerate() {
            e.cached = match optima.get(&batch.example_ids[b]) {
                Some((c, w)) if same_bits(c, &batch.targets[b].weights) => {
                    e.w_star.clone_from(w);
                    true
                }
                _ => false,
            };
        }
        // In parallel chunks of examples, each chunk phase by phase (with `--profile` the clock
        // is read once per phase and chunk).
        let prof = profile::enabled();
        let clock = || prof.then(Instant::now);
        let ns = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
            (Some(a), Some(b)) => b.saturating_duration_since(a).as_nanos() as u64,
            _ => 0,
        };
        let region = clock();
        let chunk = b_count.div_ceil(4 * rayon::current_num_threads()).max(1);
        examples
            .par_chunks_mut(chunk)
            .enumerate()
            .try_for_each(|(k, es)| -> Result<()> {
                let first = k * chunk;
                let t0 = clock();
                for (j, e) in es.iter_mut().enumerate() {
                    let b = first + j;
                    let th = &theta_hat[b * m..(b + 1) * m];
                    let c = &batch.targets[b].weights;
                    e.tilde.clear();
                    e.tilde
                        .extend(th.iter().zip(c).map(|(&t, &ci)| 2.0 * t + ci));
                    if !e.cached {
                        e.truth.clear();
                        e.truth.extend(c.iter().map(|&v| -v));
                    }
                }
                let t1 = clock();
                for e in es.iter_mut() {
                    if !e.cached {
                        structure.argmax(view(&inner, &e.truth), &mut e.w_star)?;
                    }
                    structure.argmax(view(&inner, &e.tilde), &mut e.w_tilde)?;
                }
                let t2 = clock();
                for (j, e) in es.iter_mut().enumerate() {
                    let b = first + j;
                    structure.argmax(
                        view(&inner, &theta_hat[b * m..(b + 1) * m]),
                        &mut e.predicted,
                    )?;
                }
                let t3 = clock();
                for (j, e) in es.iter_mut().enumerate() {
                    e.loss = loss.value(&batch.targets[first + j], &inner, &e.predicted)?;
                }
                if prof {
                    // The chunk's times, on its first example (the others' are zero).
                    for e in es.iter_mut() {
                        e.nanos = [0; 3];
                    }
                    es[0].nanos = [ns(t2, t3), ns(t1, t2), ns(t0, t1) + ns(t3, clock())];
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
            let cached = examples.iter().filter(|e| e.cached).count();
            profile::count_solves((3 * b_count - cached) as u64);
        }
        for (b, e) in examples.iter().enumerate() {
            let c = &batch.targets[b].weights;
            if !e.cached && *cached_values + c.len() <= MAX_CACHED_VALUES {
                let old = optima.insert(batch.example_ids[b], (c.clone(), e.w_star.clone()));
                *cached_values += c.len();
                if let Some((c, _)) = old {
                    *cached_values -= c.len();
                }
            }
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
