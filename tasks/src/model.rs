//! The trained object every task shares: structure, noise, loss, the `mu` and `sigma` scorers
//! and the estimator state, with **one** training step ([`PerturbedModel::train_step`]) that the
//! sort, k-NN and structured tasks all call.
//!
//! A task only says how the `mu` network's output becomes potentials (and how a gradient with
//! respect to the potentials goes back), through a [`PotentialMap`]; the identity map covers
//! tasks whose network outputs the potentials directly.

use crate::model_file::ModelFile;
use dlm_core::error::{DlmError, Result};
use dlm_core::estimator::{Batch, DlmEstimate, DlmEstimator, NoiseKey, EPSILON_STATE};
use dlm_core::gradient::{EstimatorState, GradientEstimator};
use dlm_core::loss::{Loss, Target};
use dlm_core::noise::NoiseModel;
use dlm_core::profile::{self, Phase};
use dlm_core::scorer::Scorer;
use dlm_core::structure::StructuredArgmax;
use ndarray::{Array1, ArrayD, ArrayView1, ArrayViewD, Axis};
use rayon::prelude::*;
use std::fmt;
use std::path::Path;
use std::time::Instant;

/// What every task trains: the structure, noise and loss, the `mu` and `sigma` scorers, and the
/// gradient estimator with its state (for DLM, the current `eps`, which the zero-direction
/// escape grows across batches). The estimator is DLM unless
/// [`set_estimator`](PerturbedModel::set_estimator) replaces it.
pub struct PerturbedModel {
    /// The solver.
    pub structure: Box<dyn StructuredArgmax>,
    /// The perturbation.
    pub noise: Box<dyn NoiseModel>,
    /// The task loss.
    pub loss: Box<dyn Loss>,
    /// The potentials network `mu_u`.
    pub mu: Box<dyn Scorer>,
    /// The noise scale `sigma_v`.
    pub sigma: NoiseScale,
    dlm: DlmEstimator,
    estimator: Box<dyn GradientEstimator>,
    state: EstimatorState,
    /// The `eps` of the last estimate (for estimators that keep none in their state).
    last_epsilon: f64,
    /// Whether [`train_step`](PerturbedModel::train_step) must return the noiseless
    /// predictions (see [`set_step_predictions`](PerturbedModel::set_step_predictions)).
    step_predictions: bool,
}

impl fmt::Debug for PerturbedModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerturbedModel")
            .field("structure", &self.structure.name())
            .field("noise", &self.noise.name())
            .field("loss", &self.loss.name())
            .field("mu", &self.mu.name())
            .field("sigma", &self.sigma)
            .field("estimator", &self.estimator.name())
            .field("state", self.state.values())
            .finish()
    }
}

impl PerturbedModel {
    /// Assembles a model; the estimator's `epsilon` is the initial `eps`.
    pub fn new(
        structure: Box<dyn StructuredArgmax>,
        noise: Box<dyn NoiseModel>,
        loss: Box<dyn Loss>,
        mu: Box<dyn Scorer>,
        sigma: NoiseScale,
        estimator: DlmEstimator,
    ) -> Result<Self> {
        estimator.validate()?;
        let boxed: Box<dyn GradientEstimator> = Box::new(estimator.clone());
        let mut state = boxed.initial_state();
        state.set(EPSILON_STATE, estimator.epsilon);
        Ok(PerturbedModel {
            structure,
            noise,
            loss,
            mu,
            sigma,
            last_epsilon: estimator.epsilon,
            step_predictions: true,
            dlm: estimator,
            estimator: boxed,
            state,
        })
    }

    /// Replaces the DLM estimator by another one (`fy`, `blackbox`, `imle`, `spo+`, or a
    /// plugin's). Refuses a learned sigma when the estimator gives it no gradient (it would
    /// never move): use a fixed sigma or none.
    pub fn set_estimator(&mut self, estimator: Box<dyn GradientEstimator>) -> Result<()> {
        if matches!(self.sigma, NoiseScale::Learned(_)) && !estimator.learns_sigma() {
            return Err(DlmError::invalid(
                "sigma",
                format!(
                    "estimator '{}' gives no gradient for a learned noise scale (it would never \
                     move); use a fixed sigma or none",
                    estimator.name()
                ),
            ));
        }
        self.state = estimator.initial_state();
        self.estimator = estimator;
        Ok(())
    }

    /// The name of the gradient estimator.
    pub fn estimator_name(&self) -> &str {
        self.estimator.name()
    }

    /// The estimator's state (named values kept across batches, e.g. DLM's `epsilon`).
    pub fn estimator_state(&self) -> &EstimatorState {
        &self.state
    }

    /// The current `eps`: the estimator's state value, else the `eps` of the last estimate
    /// (`-lambda` for blackbox and I-MLE, 0 for FY and SPO+).
    pub fn epsilon(&self) -> f64 {
        self.state.get(EPSILON_STATE).unwrap_or(self.last_epsilon)
    }

    /// Sets a named value of the estimator's state other than `eps` (resuming a checkpoint of
    /// an estimator that keeps more, e.g. the adaptive eps policy's `eps_relative`).
    pub fn set_estimator_value(&mut self, name: &str, value: f64) {
        self.state.set(name, value);
    }

    /// Sets the current `eps` (e.g. when resuming a saved model).
    pub fn set_epsilon(&mut self, eps: f64) {
        if self.state.get(EPSILON_STATE).is_some() {
            self.state.set(EPSILON_STATE, eps);
        }
        self.last_epsilon = eps;
    }

    /// Whether [`train_step`](PerturbedModel::train_step) returns the noiseless predictions
    /// (true, the default). A task that reads only [`StepStats::noiseless_loss`] sets it to
    /// false: with an estimator that uses no noise, whose [`Estimate::loss`] is by contract
    /// the loss of the noiseless `argmax <theta, phi>` on the same potentials, the step then
    /// takes that loss instead of solving every example once more (`predictions` is empty).
    ///
    /// [`Estimate::loss`]: dlm_core::gradient::Estimate::loss
    pub fn set_step_predictions(&mut self, on: bool) {
        self.step_predictions = on;
    }

    /// The DLM settings the model was built with (the initial `eps`, draws, escape).
    pub fn estimator(&self) -> &DlmEstimator {
        &self.dlm
    }

    /// Checks that a learned sigma maps inputs of `input_shape` (`[B, ...]`) to `[B, 1]`.
    pub fn check_sigma_shape(&self, input_shape: &[usize]) -> Result<()> {
        if let NoiseScale::Learned(s) = &self.sigma {
            let out = s.output_shape(input_shape)?;
            if out != [input_shape[0], 1] {
                return Err(DlmError::invalid(
                    "sigma scorer",
                    format!(
                        "maps {input_shape:?} to {out:?}, but it must give one value per example, [B, 1] (e.g. out=softplus with a last layer of width 1)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The noise scale of each of the `b` examples in `x`.
    pub fn sigmas(&mut self, x: ArrayViewD<'_, f64>, train: bool) -> Result<Array1<f64>> {
        let b = x.shape().first().copied().unwrap_or(0);
        match &mut self.sigma {
            NoiseScale::Fixed(v) => Ok(Array1::from_elem(b, *v)),
            NoiseScale::None => Ok(Array1::zeros(b)),
            NoiseScale::Learned(s) => s
                .forward(x, train)?
                .into_shape_with_order(b)
                .map_err(|_| DlmError::invalid("sigma scorer", "must return [B, 1]")),
        }
    }

    /// The estimate for a batch (DLM or the estimator set by `set_estimator`); for DLM, the
    /// `eps` it ends with becomes the current one.
    pub fn estimate(
        &mut self,
        theta: ArrayViewD<'_, f64>,
        sigma: ArrayView1<'_, f64>,
        targets: &[Target],
        example_ids: &[u64],
        key: NoiseKey,
    ) -> Result<DlmEstimate> {
        let e = self.estimator.estimate(
            &mut self.state,
            self.structure.as_ref(),
            self.noise.as_ref(),
            self.loss.as_ref(),
            &Batch {
                theta,
                sigma,
                targets,
                example_ids,
            },
            key,
        )?;
        self.last_epsilon = e.diagnostics.epsilon;
        Ok(e)
    }

    /// One training step on a batch: potentials from `mu` (through `map`), noise scales from
    /// `sigma`, the DLM estimate, back-propagation into both networks (gradients of the mean loss
    /// over the batch) and one optimizer step each; then the noiseless predictions on the same
    /// potentials, for the task's own monitored metric.
    ///
    /// `x_mu` is the input of `mu` and `x_sigma` that of `sigma` (often the same array); the
    /// batch size `B` is the length of `targets`.
    pub fn train_step(
        &mut self,
        input: StepInput<'_>,
        map: &mut dyn PotentialMap,
    ) -> Result<StepStats> {
        let b = input.targets.len();
        if b == 0 || input.example_ids.len() != b {
            return Err(DlmError::invalid(
                "training batch",
                format!(
                    "{b} targets and {} example ids; a batch needs at least one example and one id per example",
                    input.example_ids.len()
                ),
            ));
        }
        let t = profile::now();
        let out = self.mu.forward(input.x_mu, true)?;
        let t = profile::add_wall(Phase::MuForward, t);
        let theta = map.forward(out)?;
        let t = profile::add_wall(Phase::PotentialMap, t);
        if theta.shape().first() != Some(&b) {
            return Err(DlmError::invalid(
                "mu scorer",
                format!(
                    "gave potentials of shape {:?} for a batch of {b}",
                    theta.shape()
                ),
            ));
        }
        let sigma = self.sigmas(input.x_sigma, true)?;
        let t = profile::add_wall(Phase::SigmaNet, t);
        let before = t.map(|_| profile::accounted_nanos());
        let mut e = self.estimate(
            theta.view(),
            sigma.view(),
            input.targets,
            input.example_ids,
            input.key,
        )?;
        // What the estimator did not time itself is its bookkeeping.
        if let (Some(t0), Some(before)) = (t, before) {
            let inner = profile::accounted_nanos() - before;
            let wall = profile::nanos_since(Some(t0));
            profile::add_wall_nanos(Phase::Bookkeeping, wall.saturating_sub(inner));
        }
        let t = profile::now();
        let scale = 1.0 / b as f64;
        let mut grad_theta = std::mem::take(&mut e.grad_theta);
        grad_theta.mapv_inplace(|v| v * scale);
        let grad_out = map.backward_owned(grad_theta)?;
        profile::add_wall(Phase::PotentialMap, t);
        // The networks' backward passes and steps, and the noiseless predictions on the same
        // potentials, are independent: one worker starts the first while the others solve.
        let solve = self.step_predictions || self.estimator.uses_noise();
        let region = profile::now();
        let (mu, sigma_net) = (&mut self.mu, &mut self.sigma);
        let (structure, loss) = (self.structure.as_ref(), self.loss.as_ref());
        let (networks, noiseless) = rayon::join(
            || -> Result<u64> {
                mu.backward(grad_out.view())?;
                mu.step()?;
                let t = region.map(|_| Instant::now());
                step_sigma(sigma_net, &e.grad_sigma, scale)?;
                Ok(profile::nanos_since(t))
            },
            || -> Result<(f64, Vec<Vec<usize>>, u64)> {
                let mut noiseless = 0.0;
                if !solve {
                    // The estimate's losses are those of the noiseless argmax (no noise): the
                    // same values, summed in the same order.
                    for &l in &e.loss {
                        noiseless += l;
                    }
                    return Ok((noiseless, Vec::new(), 0));
                }
                let (predictions, nanos) = solve_all(structure, theta.view(), region.is_some())?;
                let inner = &theta.shape()[1..];
                for (p, t) in predictions.iter().zip(input.targets) {
                    noiseless += loss.value(t, inner, p)?;
                }
                Ok((noiseless, predictions, nanos))
            },
        );
        let sigma_nanos = networks?;
        let (noiseless, predictions, solve_nanos) = noiseless?;
        if region.is_some() {
            // The solves' and sigma's thread-time count as in any parallel region; the rest
            // of the overlapped region's thread-time is the backward pass's (which may itself
            // run on all workers), waits included.
            let wall = profile::nanos_since(region);
            let threads = rayon::current_num_threads() as u64;
            profile::add_region_nanos(wall);
            profile::add_thread(Phase::NoiselessSolves, solve_nanos);
            profile::add_thread(Phase::SigmaNet, sigma_nanos);
            profile::add_thread(
                Phase::MuBackward,
                (wall * threads).saturating_sub(solve_nanos + sigma_nanos),
            );
        }
        Ok(StepStats {
            noiseless_loss: noiseless * scale,
            perturbed_loss: e.loss.mean().unwrap_or(0.0),
            sigma_mean: sigma.mean().unwrap_or(0.0),
            sigma_min: sigma.iter().copied().fold(f64::INFINITY, f64::min),
            sigma_max: sigma.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            sigma_grad_abs: if matches!(self.sigma, NoiseScale::None) {
                0.0
            } else {
                e.grad_sigma.iter().map(|g| g.abs()).sum::<f64>() * scale
            },
            zero_with_loss: dlm_core::adaptive::zero_directions_with_loss(&e),
            zero_directions: e.diagnostics.zero_directions,
            total_draws: e.diagnostics.total_draws,
            predictions,
        })
    }

    /// The noiseless prediction (active set) of every example of potentials `[B, ...]`, solved
    /// in parallel and returned in order.
    pub fn predict_potentials(&self, theta: ArrayViewD<'_, f64>) -> Result<Vec<Vec<usize>>> {
        let region = profile::now();
        let (out, nanos) = solve_all(self.structure.as_ref(), theta, region.is_some())?;
        profile::add_region(region);
        profile::add_thread(Phase::NoiselessSolves, nanos);
        Ok(out)
    }

    /// Back-propagates `scale * grad_sigma` into a learned sigma and steps its optimizer.
    pub fn step_sigma(&mut self, grad_sigma: &Array1<f64>, scale: f64) -> Result<()> {
        step_sigma(&mut self.sigma, grad_sigma, scale)
    }

    /// Writes the weights (`mu`, and `sigma` when learned) and the current DLM `eps` into `m`
    /// (the DLM settings' `eps` under another estimator, which keeps none: a model file always
    /// rebuilds a valid DLM estimator).
    pub fn save_into(&self, m: &mut ModelFile) -> Result<()> {
        let eps = self.state.get(EPSILON_STATE).unwrap_or(self.dlm.epsilon);
        m.header.insert("epsilon".into(), eps.to_string());
        let mut mu = Vec::new();
        self.mu.save(&mut mu)?;
        m.sections.push(("mu".into(), mu));
        if let NoiseScale::Learned(s) = &self.sigma {
            let mut b = Vec::new();
            s.save(&mut b)?;
            m.sections.push(("sigma".into(), b));
        }
        Ok(())
    }

    /// Reads what [`save_into`](PerturbedModel::save_into) wrote (from the file at `path`).
    pub fn load_from(&mut self, m: &ModelFile, path: &Path) -> Result<()> {
        self.mu.load(&mut m.section("mu", path)?)?;
        if let NoiseScale::Learned(s) = &mut self.sigma {
            s.load(&mut m.section("sigma", path)?)?;
        }
        if let Ok(e) = m.get("epsilon", path)?.parse::<f64>() {
            self.set_epsilon(e);
        }
        Ok(())
    }
}

/// Back-propagates `scale * grad_sigma` into a learned sigma and steps its optimizer.
fn step_sigma(sigma: &mut NoiseScale, grad_sigma: &Array1<f64>, scale: f64) -> Result<()> {
    if let NoiseScale::Learned(s) = sigma {
        let b = grad_sigma.len();
        let g = (grad_sigma * scale)
            .into_shape_with_order((b, 1))
            .expect("b elements");
        s.backward(g.into_dyn().view())?;
        s.step()?;
    }
    Ok(())
}

/// The noiseless prediction of every example of `theta` (`[B, ...]`), in parallel chunks;
/// with `prof`, also the solves' thread-nanoseconds (timed per chunk; the solves counted).
fn solve_all(
    structure: &dyn StructuredArgmax,
    theta: ArrayViewD<'_, f64>,
    prof: bool,
) -> Result<(Vec<Vec<usize>>, u64)> {
    let b = theta.shape().first().copied().unwrap_or(0);
    let mut out = vec![Vec::new(); b];
    let chunk = b.div_ceil(4 * rayon::current_num_threads()).max(1);
    let nanos = std::sync::atomic::AtomicU64::new(0);
    out.par_chunks_mut(chunk)
        .enumerate()
        .try_for_each(|(c, actives)| -> Result<()> {
            let t = prof.then(Instant::now);
            for (j, active) in actives.iter_mut().enumerate() {
                structure.argmax(theta.index_axis(Axis(0), c * chunk + j), active)?;
            }
            if t.is_some() {
                nanos.fetch_add(
                    profile::nanos_since(t),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            Ok(())
        })?;
    if prof {
        profile::count_solves(b as u64);
    }
    Ok((out, nanos.into_inner()))
}

/// How the noise scale `sigma(x)` is obtained.
pub enum NoiseScale {
    /// A learned scorer `sigma_v(x)` (its output must be positive, e.g. softplus).
    Learned(Box<dyn Scorer>),
    /// The same fixed value for every example.
    Fixed(f64),
    /// No noise (`sigma = 0`): plain direct loss minimization of the MAP predictor.
    None,
}

impl fmt::Debug for NoiseScale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoiseScale::Learned(s) => write!(f, "Learned({})", s.name()),
            NoiseScale::Fixed(v) => write!(f, "Fixed({v})"),
            NoiseScale::None => write!(f, "None"),
        }
    }
}

/// The `--sigma` option: `learned`, `fixed:VALUE` or `none`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SigmaChoice {
    /// A learned network.
    Learned,
    /// A fixed value.
    Fixed(f64),
    /// No noise.
    None,
}

impl std::str::FromStr for SigmaChoice {
    type Err = DlmError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            DlmError::invalid(
                "--sigma",
                format!("'{s}': write learned, fixed:VALUE (VALUE > 0) or none"),
            )
        };
        match s {
            "learned" => Ok(SigmaChoice::Learned),
            "none" => Ok(SigmaChoice::None),
            _ => {
                let v: f64 = s
                    .strip_prefix("fixed:")
                    .ok_or_else(bad)?
                    .parse()
                    .map_err(|_| bad())?;
                if v > 0.0 && v.is_finite() {
                    Ok(SigmaChoice::Fixed(v))
                } else {
                    Err(bad())
                }
            }
        }
    }
}

impl fmt::Display for SigmaChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SigmaChoice::Learned => f.write_str("learned"),
            SigmaChoice::Fixed(v) => write!(f, "fixed:{v}"),
            SigmaChoice::None => f.write_str("none"),
        }
    }
}

/// One batch for [`PerturbedModel::train_step`].
#[derive(Debug, Clone)]
pub struct StepInput<'a> {
    /// Input of the `mu` network (leading axis: the batch).
    pub x_mu: ArrayViewD<'a, f64>,
    /// Input of the `sigma` network (leading axis: the batch; ignored unless sigma is learned).
    pub x_sigma: ArrayViewD<'a, f64>,
    /// The target of each example.
    pub targets: &'a [Target],
    /// A stable id per example (selects its noise with the key).
    pub example_ids: &'a [u64],
    /// Seed and epoch (or step) of the noise.
    pub key: NoiseKey,
}

/// What one [`PerturbedModel::train_step`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct StepStats {
    /// Mean task loss of the noiseless predictions on the batch (before the update).
    pub noiseless_loss: f64,
    /// Mean task loss of the perturbed predictions (the DLM objective).
    pub perturbed_loss: f64,
    /// Mean noise scale over the batch.
    pub sigma_mean: f64,
    /// Smallest noise scale of the batch.
    pub sigma_min: f64,
    /// Largest noise scale of the batch.
    pub sigma_max: f64,
    /// Mean over the batch of `|d loss / d sigma|` of each example (the estimator's sigma
    /// gradient, before the batch mean and the optimizer), for a learned or fixed sigma; 0 for
    /// no noise (the noise model must not matter then).
    pub sigma_grad_abs: f64,
    /// Draws whose DLM direction was zero.
    pub zero_directions: usize,
    /// Zero directions and draws among the examples with loss left (the rate the adaptive eps
    /// policy holds in its band; `dlm_core::adaptive::zero_directions_with_loss`).
    pub zero_with_loss: (usize, usize),
    /// Draws in total.
    pub total_draws: usize,
    /// The noiseless prediction (active set) of each example; empty when the model does not
    /// keep them and the estimator has no noise
    /// ([`PerturbedModel::set_step_predictions`]).
    pub predictions: Vec<Vec<usize>>,
}

/// How a task turns the `mu` network's output into potentials `[B, ...]`, and a gradient with
/// respect to the potentials back into one with respect to that output.
pub trait PotentialMap {
    /// Potentials from the network output (caching what `backward` needs).
    fn forward(&mut self, out: ArrayD<f64>) -> Result<ArrayD<f64>>;
    /// `d loss / d output` from `d loss / d potentials`.
    fn backward(&mut self, grad_theta: ArrayViewD<'_, f64>) -> Result<ArrayD<f64>>;
    /// [`backward`](PotentialMap::backward) of a gradient the caller no longer needs (a map
    /// that only reshapes returns it without a copy).
    fn backward_owned(&mut self, grad_theta: ArrayD<f64>) -> Result<ArrayD<f64>> {
        self.backward(grad_theta.view())
    }
}

/// The network outputs the potentials, optionally reshaped to `[B, shape...]`.
#[derive(Debug, Clone, Default)]
pub struct IdentityMap {
    /// The structure's shape (after the batch axis); `None` keeps the output's own shape.
    pub shape: Option<Vec<usize>>,
    out_shape: Vec<usize>,
}

impl IdentityMap {
    /// Reshapes the network output to `[B, shape...]` (`None`: keep it as it is).
    pub fn new(shape: Option<Vec<usize>>) -> Self {
        IdentityMap {
            shape,
            out_shape: Vec::new(),
        }
    }
}

impl PotentialMap for IdentityMap {
    fn forward(&mut self, out: ArrayD<f64>) -> Result<ArrayD<f64>> {
        self.out_shape = out.shape().to_vec();
        let Some(shape) = &self.shape else {
            return Ok(out);
        };
        let b = self.out_shape.first().copied().unwrap_or(0);
        let mut full = vec![b];
        full.extend_from_slice(shape);
        let got = out.shape().to_vec();
        out.into_shape_with_order(ndarray::IxDyn(&full))
            .map_err(|_| {
                DlmError::invalid(
                    "mu scorer",
                    format!(
                        "its output {got:?} cannot be read as potentials {full:?}; give it {} outputs per example",
                        shape.iter().product::<usize>()
                    ),
                )
            })
    }
    fn backward(&mut self, grad_theta: ArrayViewD<'_, f64>) -> Result<ArrayD<f64>> {
        self.backward_owned(grad_theta.to_owned())
    }
    fn backward_owned(&mut self, grad_theta: ArrayD<f64>) -> Result<ArrayD<f64>> {
        grad_theta
            .into_shape_with_order(ndarray::IxDyn(&self.out_shape))
            .map_err(|_| DlmError::invalid("potential gradient", "shape changed within a step"))
    }
}
