//! Implicit maximum-likelihood estimation (Niepert, Minervini & Franceschi 2021, *Implicit
//! MLE: Backpropagating Through Discrete Exponential Family Distributions*).

use crate::common::{check_draws, check_lambda, draws_option, lambda_option, linear_forms};
use dlm_core::gradient::{Batch, Diagnostics, Estimate, EstimatorState, GradientEstimator};
use dlm_core::rng::noise_rng;
use dlm_core::{Config, Loss, NoiseKey, NoiseModel, Result, StructuredArgmax};
use ndarray::{Array1, ArrayD, ArrayViewD, IxDyn};
use rayon::prelude::*;

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
    gamma: Vec<f64>,
    pert: Vec<f64>,
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
        let inner = batch.check(structure)?;
        let m: usize = inner.iter().product();
        let b_count = batch.targets.len();
        let theta_std = batch.theta.as_standard_layout();
        let theta = theta_std.as_slice().expect("standard layout");
        let scratch = state.scratch::<Scratch>();
        linear_forms("imle", loss, batch.targets, &inner, &mut scratch.lin)?;

        let draws = self.draws;
        let n_pairs = b_count * draws;
        if scratch.pairs.len() < n_pairs {
            scratch.pairs.resize_with(n_pairs, Pair::default);
        }
        let lin = &scratch.lin;
        let pairs = &mut scratch.pairs[..n_pairs];
        // Written as DLM's `pert + eps * L` with `eps = -lambda` (the same floating-point
        // operations, so the two agree bit for bit).
        let eps = -self.lambda;
        pairs
            .par_iter_mut()
            .enumerate()
            .with_min_len(4)
            .try_for_each(|(k, p)| -> Result<()> {
                let (b, d) = (k / draws, k % draws);
                p.gamma.resize(m, 0.0);
                p.pert.resize(m, 0.0);
                p.target.resize(m, 0.0);
                let mut rng = noise_rng(key.seed, key.epoch, batch.example_ids[b], d as u64);
                noise.sample(&mut rng, &mut p.gamma)?;
                let s = batch.sigma[b];
                let th = &theta[b * m..(b + 1) * m];
                for ((q, &t), &g) in p.pert.iter_mut().zip(th).zip(&p.gamma) {
                    *q = t + s * g;
                }
                let l = &lin[b * m..(b + 1) * m];
                for ((a, &q), &li) in p.target.iter_mut().zip(&p.pert).zip(l) {
                    *a = q + eps * li;
                }
                let pert = ArrayViewD::from_shape(IxDyn(&inner), &p.pert[..]).expect("shape");
                let target = ArrayViewD::from_shape(IxDyn(&inner), &p.target[..]).expect("shape");
                structure.argmax_pair(pert, target, &mut p.z, &mut p.z_target)?;
                p.loss = loss.value(&batch.targets[b], &inner, &p.z)?;
                Ok(())
            })?;

        // Reduce in a fixed order: g -= phi(z') / lambda, then g += phi(z) / lambda (DLM's
        // order at eps = -lambda).
        let mut full_shape = vec![b_count];
        full_shape.extend_from_slice(&inner);
        let mut grad_theta = ArrayD::<f64>::zeros(IxDyn(&full_shape));
        let mut loss_mean = Array1::<f64>::zeros(b_count);
        let gt = grad_theta
            .as_slice_mut()
            .expect("fresh array is contiguous");
        let w = 1.0 / (eps * draws as f64); // = -1 / (lambda draws)
        let mut zero_directions = 0;
        for (k, p) in pairs.iter().enumerate() {
            let b = k / draws;
            loss_mean[b] += p.loss / draws as f64;
            if p.z == p.z_target {
                zero_directions += 1;
                continue;
            }
            let g = &mut gt[b * m..(b + 1) * m];
            for &i in &p.z_target {
                g[i] += w;
            }
            for &i in &p.z {
                g[i] -= w;
            }
        }
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
