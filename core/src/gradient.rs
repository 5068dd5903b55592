//! Gradient estimators: the fifth kind of component, beside structures, noise models, losses
//! and scorers.
//!
//! A [`GradientEstimator`] turns a batch of potentials `theta` (`[B, ...]`), noise scales
//! `sigma` (`[B]`) and targets into the gradient, with respect to `theta` (and, where the
//! estimator defines one, to `sigma`), of the loss that training **minimises**, through any
//! [`StructuredArgmax`] and [`NoiseModel`]. DLM ([`DlmEstimator`](crate::DlmEstimator)) is one
//! implementation; the built-in plugin `dlm-plugin-estimators` adds the perturbed
//! Fenchel-Young loss, blackbox interpolation, I-MLE and SPO+, and registers all five.
//!
//! # Conventions every estimator follows
//! * **Sign.** `grad_theta` is the gradient of the loss to minimise: the trainer steps
//!   `theta <- theta - lr * grad_theta` (through the network), so a correct estimator moves
//!   `theta` towards the truth. Potentials are maximised (`y = argmax <theta, phi(y)>`); a
//!   task with costs `c` uses `theta = -c`.
//! * **Per example.** `grad_theta[b]` is the gradient of example `b`'s loss (averaged over
//!   its noise draws, not over the batch); the trainer divides by `B` itself.
//! * **Noise.** Draw `d` of example `b` comes from
//!   [`noise_rng`](crate::rng::noise_rng)`(key.seed, key.epoch, batch.example_ids[b], d)`,
//!   filled by `noise.sample` into one vector of the potentials' size and scaled by
//!   `sigma[b]`: the perturbed potentials are `theta_b + sigma_b * gamma`. The result then
//!   does not depend on the number of threads, and a test can reproduce every draw.
//! * **State.** What an estimator carries from one batch to the next (DLM's `eps` after
//!   escapes) lives in an [`EstimatorState`], not in the estimator, which is immutable and
//!   shareable; the state's named values are what a checkpoint saves and restores.

use crate::error::{DlmError, Result};
use crate::loss::{Loss, Target};
use crate::noise::NoiseModel;
use crate::structure::StructuredArgmax;
use ndarray::{Array1, ArrayD, ArrayView1, ArrayViewD, IxDyn};
use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;

/// One batch for an estimator.
#[derive(Debug, Clone)]
pub struct Batch<'a> {
    /// Potentials `mu_u(x)`, shape `[B, ...]` with the structure's shape after the batch axis.
    pub theta: ArrayViewD<'a, f64>,
    /// Noise scales `sigma_v(x)`, shape `[B]`, each finite and `>= 0` (0 = no noise).
    /// Estimators that use no noise ([`GradientEstimator::uses_noise`] false) ignore it, but
    /// it must still have one entry per example.
    pub sigma: ArrayView1<'a, f64>,
    /// Ground truth of each example.
    pub targets: &'a [Target],
    /// A stable identifier of each example (e.g. its index in the data set); with the epoch
    /// and the draw it selects the noise.
    pub example_ids: &'a [u64],
}

impl Batch<'_> {
    /// Checks the batch against `structure` and returns the shape of one example's potentials
    /// (`theta`'s shape without the batch axis): at least one example, a shape the structure
    /// accepts, one `sigma`, target and example id per example, finite potentials, and every
    /// `sigma` finite and `>= 0`. Estimators call it first.
    pub fn check(&self, structure: &dyn StructuredArgmax) -> Result<Vec<usize>> {
        let shape = self.theta.shape();
        if shape.is_empty() || shape[0] == 0 {
            return Err(DlmError::Empty {
                what: "batch".into(),
                hint: "give at least one example".into(),
            });
        }
        let b_count = shape[0];
        let inner = shape[1..].to_vec();
        structure.check_shape(&inner)?;
        if self.sigma.len() != b_count
            || self.targets.len() != b_count
            || self.example_ids.len() != b_count
        {
            return Err(DlmError::invalid(
                "batch",
                format!(
                    "theta has {b_count} examples but sigma has {}, targets {}, example ids {}",
                    self.sigma.len(),
                    self.targets.len(),
                    self.example_ids.len()
                ),
            ));
        }
        match self.theta.as_slice() {
            Some(s) => crate::error::ensure_finite("potentials", s)?,
            None => {
                if let Some((index, &value)) =
                    self.theta.iter().enumerate().find(|(_, v)| !v.is_finite())
                {
                    return Err(DlmError::NonFinite {
                        what: "potentials".into(),
                        index,
                        value,
                    });
                }
            }
        }
        for (b, &s) in self.sigma.iter().enumerate() {
            if !(s.is_finite() && s >= 0.0) {
                return Err(DlmError::invalid(
                    "sigma",
                    format!("sigma of example {b} is {s}; the noise scale must be finite and >= 0"),
                ));
            }
        }
        Ok(inner)
    }
}

/// Where the noise comes from: the user's seed and the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoiseKey {
    /// The user's seed.
    pub seed: u64,
    /// The epoch (or any outer counter).
    pub epoch: u64,
}

/// Diagnostics of one estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostics {
    /// DLM: the `eps` the returned gradients were computed with (after escapes). Estimators
    /// that are DLM at a fixed `eps` report it (blackbox and I-MLE: `-lambda`); the others 0.
    pub epsilon: f64,
    /// Draws whose contribution to `grad_theta` is zero because the two solutions the
    /// estimator compares are equal as active sets in canonical order (DLM: `y*(eps) = y*`;
    /// Fenchel-Young: the perturbed solution is the truth; blackbox, I-MLE: the solution
    /// equals the target-shifted one; SPO+: `w~ = w*`).
    pub zero_directions: usize,
    /// Draws in total (`B * draws`; `B` for estimators without draws).
    pub total_draws: usize,
    /// How many times `|eps|` was enlarged (DLM's zero-direction escape; 0 for the others).
    pub escapes: usize,
}

/// The gradients of one batch.
#[derive(Debug, Clone)]
pub struct Estimate {
    /// Gradient of each example's loss with respect to its potentials, shape `[B, ...]`,
    /// averaged over draws (not over the batch).
    pub grad_theta: ArrayD<f64>,
    /// Gradient with respect to each example's `sigma`, shape `[B]`, averaged over draws;
    /// all zeros when the estimator does not learn sigma
    /// ([`GradientEstimator::learns_sigma`] false).
    pub grad_sigma: Array1<f64>,
    /// Per example, the task loss of the estimator's prediction, averaged over draws: the
    /// perturbed prediction `argmax <theta + sigma gamma, phi>` for estimators with noise, the
    /// noiseless `argmax <theta, phi>` for the others.
    pub loss: Array1<f64>,
    /// Zero directions, draws and the `eps` used.
    pub diagnostics: Diagnostics,
}

impl Estimate {
    /// Zero gradients and losses for potentials of `shape` (`[B, ...]`), zero diagnostics.
    pub fn zeros(shape: &[usize]) -> Estimate {
        let b = shape.first().copied().unwrap_or(0);
        Estimate {
            grad_theta: ArrayD::zeros(IxDyn(shape)),
            grad_sigma: Array1::zeros(b),
            loss: Array1::zeros(b),
            diagnostics: Diagnostics {
                epsilon: 0.0,
                zero_directions: 0,
                total_draws: 0,
                escapes: 0,
            },
        }
    }
}

/// What an estimator carries from one batch to the next.
///
/// * **Values**: named scalars that belong in a checkpoint (DLM: `"epsilon"`, the current
///   `eps` after zero-direction escapes). Save [`values`](EstimatorState::values) with a
///   model and [`set`](EstimatorState::set) them again before resuming; a value that is not
///   set means "the estimator's configured one".
/// * **Scratch**: buffers an estimator reuses between calls so that its hot loop does not
///   allocate ([`scratch`](EstimatorState::scratch)); never saved, and any content is valid:
///   results never depend on it.
///
/// Start from [`GradientEstimator::initial_state`].
#[derive(Default)]
pub struct EstimatorState {
    values: BTreeMap<String, f64>,
    scratch: Option<Box<dyn Any + Send + Sync>>,
}

impl fmt::Debug for EstimatorState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EstimatorState")
            .field("values", &self.values)
            .field("scratch", &self.scratch.is_some())
            .finish()
    }
}

impl EstimatorState {
    /// No values, no scratch.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value named `name`, if set.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.get(name).copied()
    }

    /// Sets the value named `name` (e.g. when restoring a checkpoint). The estimator
    /// validates it when it uses it.
    pub fn set(&mut self, name: &str, value: f64) {
        self.values.insert(name.to_string(), value);
    }

    /// Every value, by name: what a checkpoint saves.
    pub fn values(&self) -> &BTreeMap<String, f64> {
        &self.values
    }

    /// The scratch buffers of type `T`, created with `T::default()` when there are none or
    /// they have another type (e.g. the state was used by another estimator).
    pub fn scratch<T: Any + Send + Sync + Default>(&mut self) -> &mut T {
        if !self.scratch.as_ref().is_some_and(|s| s.is::<T>()) {
            self.scratch = Some(Box::new(T::default()));
        }
        self.scratch
            .as_mut()
            .and_then(|s| s.downcast_mut::<T>())
            .expect("scratch of type T was just ensured")
    }
}

/// A gradient estimator for randomly perturbed structured predictors.
///
/// Implementations are immutable settings (shareable, `Send + Sync`); what changes from batch
/// to batch lives in the [`EstimatorState`] the caller keeps (see the
/// [module docs](self) for the sign, noise and state conventions).
///
/// # Contract
/// * `grad_theta` has `theta`'s shape, `grad_sigma`, `loss` have `[B]`; all finite.
/// * Deterministic: equal inputs, key and state values give equal results, whatever the
///   number of threads.
/// * Invalid input (see [`Batch::check`]), a loss or target the estimator cannot use, or
///   invalid settings give an error naming the problem, never a panic.
/// * `name`, `learns_sigma`, `uses_noise` and `initial_state` cannot report an error and
///   must not panic.
///
/// # Example
/// The structured perceptron, `grad = phi(argmax theta) - phi(truth)` (the Fenchel-Young
/// gradient without noise), on a 3-class argmax.
/// ```
/// use dlm_core::gradient::{Batch, Estimate, EstimatorState, GradientEstimator, NoiseKey};
/// use dlm_core::structure::checked_slice;
/// use dlm_core::{Loss, NoiseModel, Result, StructuredArgmax, Target};
/// use ndarray::{arr1, arr2, ArrayViewD};
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
/// # struct NoNoise;
/// # impl NoiseModel for NoNoise {
/// #     fn name(&self) -> &str { "none" }
/// #     fn sample(&self, _: &mut dlm_core::DlmRng, out: &mut [f64]) -> Result<()> { out.fill(0.0); Ok(()) }
/// #     fn mean(&self) -> f64 { 0.0 }
/// #     fn variance(&self) -> f64 { 0.0 }
/// # }
/// # struct ZeroOne;
/// # impl Loss for ZeroOne {
/// #     fn name(&self) -> &str { "zero-one" }
/// #     fn value(&self, t: &Target, _: &[usize], a: &[usize]) -> Result<f64> {
/// #         Ok((a != t.truth.as_slice()) as u8 as f64)
/// #     }
/// # }
///
/// struct Perceptron;
/// impl GradientEstimator for Perceptron {
///     fn name(&self) -> &str { "perceptron" }
///     fn learns_sigma(&self) -> bool { false }
///     fn uses_noise(&self) -> bool { false }
///     fn estimate(&self, _state: &mut EstimatorState, structure: &dyn StructuredArgmax,
///                 _noise: &dyn NoiseModel, loss: &dyn Loss, batch: &Batch<'_>,
///                 _key: NoiseKey) -> Result<Estimate> {
///         let inner = batch.check(structure)?;
///         let mut e = Estimate::zeros(batch.theta.shape());
///         let mut y = Vec::new();
///         for (b, t) in batch.targets.iter().enumerate() {
///             structure.argmax(batch.theta.index_axis(ndarray::Axis(0), b), &mut y)?;
///             let mut g = e.grad_theta.index_axis_mut(ndarray::Axis(0), b);
///             let g = g.as_slice_mut().unwrap();
///             for &i in &y { g[i] += 1.0; }
///             for &i in &t.truth { g[i] -= 1.0; }
///             e.loss[b] = loss.value(t, &inner, &y)?;
///             e.diagnostics.zero_directions += (y == t.truth) as usize;
///         }
///         e.diagnostics.total_draws = batch.targets.len();
///         Ok(e)
///     }
/// }
///
/// let theta = arr2(&[[0.0, 1.0, -0.5]]).into_dyn(); // prefers class 1, truth is 0
/// let sigma = arr1(&[0.0]);
/// let targets = [Target { truth: vec![0], weights: vec![] }];
/// let batch = Batch { theta: theta.view(), sigma: sigma.view(), targets: &targets, example_ids: &[0] };
/// let est: Box<dyn GradientEstimator> = Box::new(Perceptron);
/// let mut state = est.initial_state();
/// let e = est.estimate(&mut state, &Best, &NoNoise, &ZeroOne, &batch, NoiseKey { seed: 1, epoch: 0 })?;
/// assert_eq!(e.grad_theta.as_slice().unwrap(), &[-1.0, 1.0, 0.0]); // descent raises theta_0
/// assert_eq!(e.loss[0], 1.0);
/// # Ok::<(), dlm_core::DlmError>(())
/// ```
pub trait GradientEstimator: Send + Sync {
    /// The registered name (e.g. `dlm`, `fy`).
    fn name(&self) -> &str;

    /// Whether [`Estimate::grad_sigma`] is a gradient (of the same loss as `grad_theta`) that
    /// a learned noise scale may be trained with; when false it is all zeros and a learned
    /// sigma would never move.
    fn learns_sigma(&self) -> bool;

    /// Whether the estimator perturbs the potentials with the noise model and `sigma` at all
    /// (false: both are ignored, e.g. blackbox interpolation and SPO+).
    fn uses_noise(&self) -> bool;

    /// The state to start training with; its values name what a checkpoint must keep (DLM:
    /// `epsilon` at the configured initial `eps`). The default is empty.
    fn initial_state(&self) -> EstimatorState {
        EstimatorState::new()
    }

    /// The gradients for one batch; reads and updates `state` (see [`EstimatorState`]).
    fn estimate(
        &self,
        state: &mut EstimatorState,
        structure: &dyn StructuredArgmax,
        noise: &dyn NoiseModel,
        loss: &dyn Loss,
        batch: &Batch<'_>,
        key: NoiseKey,
    ) -> Result<Estimate>;
}

/// A boxed estimator (e.g. one a [`Registry`](crate::Registry) created) is an estimator, so
/// that wrappers generic over `E: GradientEstimator` accept it.
impl<E: GradientEstimator + ?Sized> GradientEstimator for Box<E> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn learns_sigma(&self) -> bool {
        (**self).learns_sigma()
    }
    fn uses_noise(&self) -> bool {
        (**self).uses_noise()
    }
    fn initial_state(&self) -> EstimatorState {
        (**self).initial_state()
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
        (**self).estimate(state, structure, noise, loss, batch, key)
    }
}
