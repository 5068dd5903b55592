//! Scorers: parametric maps `x -> mu_u(x)` (potentials) and `x -> sigma_v(x)` (noise scale).

use crate::error::{DlmError, Result};
use ndarray::{ArrayD, ArrayViewD};
use std::io::{Read, Write};

/// A trainable network (or any differentiable parametric map) with its own optimizer.
///
/// The engine calls `forward` on a batch, computes the gradient of the loss with respect to
/// the output, hands it to `backward` (which accumulates parameter gradients), then `step`.
pub trait Scorer: Send {
    /// The registered name (e.g. `mlp`).
    fn name(&self) -> &str;

    /// The output shape for an input of `input_shape` (leading axis = batch), or an error that
    /// says which input shape is expected.
    fn output_shape(&self, input_shape: &[usize]) -> Result<Vec<usize>>;

    /// Forward pass; caches what `backward` needs when `train` is true.
    fn forward(&mut self, x: ArrayViewD<'_, f64>, train: bool) -> Result<ArrayD<f64>>;

    /// Accumulates parameter gradients for `d loss / d output` of the last training forward.
    fn backward(&mut self, grad_out: ArrayViewD<'_, f64>) -> Result<()>;

    /// Applies one optimizer step with the accumulated gradients, then clears them.
    fn step(&mut self) -> Result<()>;

    /// Clears accumulated gradients.
    fn zero_grad(&mut self);

    /// Number of scalar parameters.
    fn num_params(&self) -> usize;

    /// All parameters, flattened in a fixed order (for checks and tests).
    fn params(&self) -> Vec<f64>;

    /// Replaces all parameters (same order and length as [`params`](Scorer::params)).
    fn set_params(&mut self, params: &[f64]) -> Result<()>;

    /// Accumulated gradients, in the order of [`params`](Scorer::params).
    fn grads(&self) -> Vec<f64>;

    /// Writes the scorer's weights and optimizer state.
    fn save(&self, w: &mut dyn Write) -> Result<()>;

    /// Reads weights written by [`save`](Scorer::save), refusing malformed input.
    fn load(&mut self, r: &mut dyn Read) -> Result<()>;

    /// Where the scorer computes (`cpu`, `cuda:0`, ...).
    fn device(&self) -> String {
        "cpu".into()
    }

    /// Moves the scorer to another device; CPU-only scorers refuse anything but `cpu`.
    fn to_device(&mut self, device: &str) -> Result<()> {
        if device == "cpu" {
            Ok(())
        } else {
            Err(DlmError::Unsupported {
                component: format!("scorer '{}'", self.name()),
                what: format!("device '{device}'"),
                hint: "keep it on cpu, or use a scorer that supports other devices (the torch plugin)".into(),
            })
        }
    }
}
