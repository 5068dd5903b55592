//! Blackbox differentiation of combinatorial solvers by interpolation (Vlastelica, Paulus,
//! Musil, Martius & Rolinek 2020, *Differentiation of Blackbox Combinatorial Solvers*).

use crate::common::{check_lambda, lambda_option, linear_forms};
use dlm_core::gradient::{Batch, Diagnostics, Estimate, EstimatorState, GradientEstimator};
use dlm_core::{Config, Loss, NoiseKey, NoiseModel, Result, StructuredArgmax};
use ndarray::{Array1, ArrayD, ArrayViewD, IxDyn};
use rayon::prelude::*;

/// Blackbox interpolation, registered as `blackbox` (option `lambda`, default 10).
///
/// The paper minimises costs `w`: `y(w) = argmin <w, y>`, and its backward pass returns
/// `-(y(w) - y(w + lambda dL/dy)) / lambda`. In this crate's maximisation convention
/// (`theta = -w`) with the loss's linear form `L = dl/dphi` (`l(y) = c + <L, phi(y)>`):
///
/// ```text
///   y          = argmax <theta, phi(y)>
///   y_lambda   = argmax <theta - lambda L, phi(y)>
///   grad_theta = (phi(y) - phi(y_lambda)) / lambda
/// ```
///
/// (`d/dtheta = -d/dw`, and `w + lambda L` is `-(theta - lambda L)`.) Descending it raises the
/// potentials of what the lower-loss `y_lambda` picks: `theta` moves towards lower loss. It
/// is DLM without noise at `eps = -lambda` (`sigma = 0`, no escape); the tests check that
/// identity and the closed form by brute force.
///
/// No noise (the noise model and `sigma` are ignored), no sigma gradient (zeros). The loss
/// must have a linear form (otherwise a clear error).
#[derive(Debug, Clone, PartialEq)]
pub struct Blackbox {
    /// The interpolation strength `lambda > 0`.
    pub lambda: f64,
}

impl Default for Blackbox {
    fn default() -> Self {
        Blackbox { lambda: 10.0 }
    }
}

impl Blackbox {
    /// From the option `lambda=10`.
    pub fn from_config(c: &Config) -> Result<Self> {
        Ok(Blackbox {
            lambda: lambda_option(c, "blackbox", 10.0)?,
        })
    }

    /// Validates the settings.
    pub fn validate(&self) -> Result<()> {
        check_lambda("blackbox", self.lambda)
    }
}

#[derive(Debug, Default, Clone)]
struct Example {
    shifted: Vec<f64>,
    y: Vec<usize>,
    y_lambda: Vec<usize>,
    loss: f64,
}

/// Buffers kept in the estimator state between calls.
#[derive(Debug, Default, Clone)]
struct Scratch {
    examples: Vec<Example>,
    lin: Vec<f64>,
}

impl GradientEstimator for Blackbox {
    fn name(&self) -> &str {
        "blackbox"
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
        self.validate()?;
        let inner = batch.check(structure)?;
        let m: usize = inner.iter().product();
        let b_count = batch.targets.len();
        let theta_std = batch.theta.as_standard_layout();
        let theta = theta_std.as_slice().expect("standard layout");
        let scratch = state.scratch::<Scratch>();
        linear_forms("blackbox", loss, batch.targets, &inner, &mut scratch.lin)?;
        if scratch.examples.len() < b_count {
            scratch.examples.resize_with(b_count, Example::default);
        }
        let lin = &scratch.lin;
        let examples = &mut scratch.examples[..b_count];
        let lambda = self.lambda;
        examples
            .par_iter_mut()
            .enumerate()
            .try_for_each(|(b, e)| -> Result<()> {
                let th = &theta[b * m..(b + 1) * m];
                let l = &lin[b * m..(b + 1) * m];
                e.shifted.clear();
                e.shifted
                    .extend(th.iter().zip(l).map(|(&t, &li)| t - lambda * li));
                let plain = ArrayViewD::from_shape(IxDyn(&inner), th).expect("shape");
                let shifted = ArrayViewD::from_shape(IxDyn(&inner), &e.shifted[..]).expect("shape");
                structure.argmax_pair(plain, shifted, &mut e.y, &mut e.y_lambda)?;
                e.loss = loss.value(&batch.targets[b], &inner, &e.y)?;
                Ok(())
            })?;

        let mut full_shape = vec![b_count];
        full_shape.extend_from_slice(&inner);
        let mut grad_theta = ArrayD::<f64>::zeros(IxDyn(&full_shape));
        let mut loss_out = Array1::<f64>::zeros(b_count);
        let gt = grad_theta
            .as_slice_mut()
            .expect("fresh array is contiguous");
        let w = 1.0 / lambda;
        let mut zero_directions = 0;
        for (b, e) in examples.iter().enumerate() {
            loss_out[b] = e.loss;
            if e.y == e.y_lambda {
                zero_directions += 1;
                continue;
            }
            let g = &mut gt[b * m..(b + 1) * m];
            for &i in &e.y_lambda {
                g[i] -= w;
            }
            for &i in &e.y {
                g[i] += w;
            }
        }
        Ok(Estimate {
            grad_theta,
            grad_sigma: Array1::zeros(b_count),
            loss: loss_out,
            diagnostics: Diagnostics {
                epsilon: -lambda,
                zero_directions,
                total_draws: b_count,
                escapes: 0,
            },
        })
    }
}
