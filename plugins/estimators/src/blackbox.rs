//! Blackbox differentiation of combinatorial solvers by interpolation (Vlastelica, Paulus,
//! Musil, Martius & Rolinek 2020, *Differentiation of Blackbox Combinatorial Solvers*).

use crate::common::{add_difference, check_lambda, lambda_option, linear_forms, solve_each, Flat};
use dlm_core::gradient::{Batch, Diagnostics, Estimate, EstimatorState, GradientEstimator};
use dlm_core::{Config, Loss, NoiseKey, NoiseModel, Result, StructuredArgmax};
use ndarray::Array1;

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
        let flat = Flat::new(batch, structure)?;
        let b_count = flat.b_count;
        let scratch = state.scratch::<Scratch>();
        linear_forms(
            "blackbox",
            loss,
            batch.targets,
            &flat.inner,
            &mut scratch.lin,
        )?;
        let lin = &scratch.lin;
        let lambda = self.lambda;
        let examples = solve_each(&mut scratch.examples, b_count, 1, |b, e| {
            let th = flat.theta(b);
            e.shifted.clear();
            e.shifted.extend(
                th.iter()
                    .zip(flat.row(lin, b))
                    .map(|(&t, &li)| t - lambda * li),
            );
            let (plain, shifted) = (flat.view(th), flat.view(&e.shifted));
            structure.argmax_pair(plain, shifted, &mut e.y, &mut e.y_lambda)?;
            e.loss = loss.value(&batch.targets[b], &flat.inner, &e.y)?;
            Ok(())
        })?;

        // grad = w (phi(y_lambda) - phi(y)), w = 1 / eps = -1 / lambda: g -= phi(y_lambda) /
        // lambda, then g += phi(y) / lambda (DLM's order at eps = -lambda).
        let mut loss_out = Array1::<f64>::zeros(b_count);
        let w = -(1.0 / lambda);
        let mut zero_directions = 0;
        let grad_theta = flat.reduce(examples, 1, |b, e, g| {
            loss_out[b] = e.loss;
            if !add_difference(g, &e.y_lambda, &e.y, w) {
                zero_directions += 1;
            }
        });
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
