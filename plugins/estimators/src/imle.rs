//! Implicit maximum-likelihood estimation (Niepert, Minervini & Franceschi 2021, *Implicit
//! MLE: Backpropagating Through Discrete Exponential Family Distributions*).

use crate::common::{
    add_difference, check_draws, check_lambda, draws_option, lambda_option, linear_forms,
    solve_each, Draw, Flat,
};
use dlm_core::gradient::{Batch, Diagnostics, Estimate, EstimatorState, GradientEstimator};
use dlm_core::{Config, Loss, NoiseKey, NoiseModel, Result, StructuredArgmax};
use ndarray::Array1;

/// I-MLE with the perturb-and-MAP target distribution, registered as `imle` (options
/// `lambda`, default 10, and `draws`, default 1).
///
/// For draws `gamma_d` of the noise model (the paper's choice, and the CLI's default for this
/// estimator, is Sum-of-Gamma noise, `sum-of-gamma:k=K` of `dlm-plugin-noise` with `K` the
/// number of parts a solution selects) and the loss's linear form `L = dl/dphi`
/// (`l(y) = c + <L, phi(y)>`):
///
/// ```text
///   z_d   = argmax <theta + sigma gamma_d, phi(z)>                   (MAP of the perturbed model)
///   theta' = theta - lambda L                                        (the target distribution)
///   z'_d  = argmax <theta' + sigma gamma_d, phi(z)>                  (same noise draw)
///   grad_theta = mean_d (phi(z_d) - phi(z'_d)) / lambda
/// ```
///
/// Descending it raises the potentials of the parts `z'` (lower loss) picks and lowers those
/// only `z` picks. The reference implementation (`torch-imle`) returns the difference of the
/// two MAP states without dividing by `lambda`, which then goes into the learning rate;
/// dividing by `lambda` here keeps the gradient's scale independent of `lambda`, and for small
/// `lambda` the estimate approaches `d E[l] / d theta` (the expected loss under the noise).
///
/// # Relation to DLM
/// With a linear loss this is **exactly DLM at `eps = -lambda`** (`y*(eps) = argmax <theta +
/// sigma gamma + eps L, phi> = z'`, and `(phi(y*(eps)) - phi(y*)) / eps = (phi(z) - phi(z')) /
/// lambda`) without DLM's zero-direction escape and without a sigma gradient: the two methods
/// differ in the noise they are used with (Sum-of-Gamma here), in DLM growing `|eps|` when
/// every direction is zero, and in DLM learning sigma. The tests check that the two agree bit
/// for bit on the same noise draws.
///
/// The loss must have a linear form (otherwise a clear error). No sigma gradient (zeros).
#[derive(Debug, Clone, PartialEq)]
pub struct Imle {
    /// The step `lambda > 0` towards lower loss that defines the target distribution.
    pub lambda: f64,
    /// Noise draws per example (>= 1).
    pub draws: usize,
}

impl Default for Imle {
    fn default() -> Self {
        Imle {
            lambda: 10.0,
            draws: 1,
        }
    }
}

impl Imle {
    /// From the options `lambda=10`, `draws=1`.
    pub fn from_config(c: &Config) -> Result<Self> {
        Ok(Imle {
            lambda: lambda_option(c, "imle", 10.0)?,
            draws: draws_option(c, "imle", 1)?,
        })
    }

    /// Validates the settings.
    pub fn validate(&self) -> Result<()> {
        check_lambda("imle", self.lambda)?;
        check_draws("imle", self.draws)
    }
}

#[derive(Debug, Default, Clone)]
struct Pair {
    draw: Draw,
    target: Vec<f64>,
    z: Vec<usize>,
    z_target: Vec<usize>,
    loss: f64,
}

/// Buffers kept in the estimator state between calls.
#[derive(Debug, Default, Clone)]
struct Scratch {
    pairs: Vec<Pair>,
    lin: Vec<f64>,
}

impl GradientEstimator for Imle {
    fn name(&self) -> &str {
        "imle"
    }

    fn learns_sigma(&self) -> bool {
        false
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
        let scratch = state.scratch::<Scratch>();
        linear_forms("imle", loss, batch.targets, &flat.inner, &mut scratch.lin)?;

        let draws = self.draws;
        let n_pairs = b_count * draws;
        let lin = &scratch.lin;
        // Written as DLM's `pert + eps * L` with `eps = -lambda` (the same floating-point
        // operations, so the two agree bit for bit).
        let eps = -self.lambda;
        let pairs = solve_each(&mut scratch.pairs, n_pairs, 4, |k, p| {
            let (b, d) = (k / draws, k % draws);
            p.draw.sample(&flat, noise, key, b, d)?;
            p.target.resize(m, 0.0);
            for ((a, &q), &li) in p.target.iter_mut().zip(&p.draw.pert).zip(flat.row(lin, b)) {
                *a = q + eps * li;
            }
            let (pert, target) = (flat.view(&p.draw.pert), flat.view(&p.target));
            structure.argmax_pair(pert, target, &mut p.z, &mut p.z_target)?;
            p.loss = loss.value(&batch.targets[b], &flat.inner, &p.z)?;
            Ok(())
        })?;

        // Reduce in a fixed order: g -= phi(z') / lambda, then g += phi(z) / lambda (DLM's
        // order at eps = -lambda).
        let mut loss_mean = Array1::<f64>::zeros(b_count);
        let w = 1.0 / (eps * draws as f64); // = -1 / (lambda draws)
        let mut zero_directions = 0;
        let grad_theta = flat.reduce(pairs, draws, |b, p, g| {
            loss_mean[b] += p.loss / draws as f64;
            if !add_difference(g, &p.z_target, &p.z, w) {
                zero_directions += 1;
            }
        });
        Ok(Estimate {
            grad_theta,
            grad_sigma: Array1::zeros(b_count),
            loss: loss_mean,
            diagnostics: Diagnostics {
                epsilon: eps,
                zero_directions,
                total_draws: n_pairs,
                escapes: 0,
            },
        })
    }
}
