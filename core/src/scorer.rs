//! Scorers: parametric maps `x -> mu_u(x)` (potentials) and `x -> sigma_v(x)` (noise scale).

use crate::error::{DlmError, Result};
use ndarray::{ArrayD, ArrayViewD};
use std::io::{Read, Write};

/// A trainable network (or any differentiable parametric map) with its own optimizer.
///
/// The engine calls `forward` on a batch, computes the gradient of the loss with respect to
/// the output, hands it to `backward` (which accumulates parameter gradients), then `step`.
///
/// # What a new scorer must write
/// Seven methods: [`name`](Scorer::name), [`output_shape`](Scorer::output_shape),
/// [`forward`](Scorer::forward), [`backward`](Scorer::backward), [`step`](Scorer::step),
/// [`params`](Scorer::params) and [`set_params`](Scorer::set_params). The rest have defaults:
/// `save`/`load` store the flat parameter vector (override them to keep optimizer state),
/// `num_params` counts `params()`, `zero_grad` does nothing (for scorers whose `step` clears
/// the gradients, as it must), `grads` is empty (gradient checks then skip the scorer) and the
/// device is the CPU.
///
/// ```
/// use dlm_core::{Result, Scorer};
/// use ndarray::{ArrayD, ArrayViewD, Axis};
///
/// /// `y = w * x` on every entry, trained by plain gradient descent.
/// struct Scale { w: f64, grad: f64, x: Option<ArrayD<f64>> }
///
/// impl Scorer for Scale {
///     fn name(&self) -> &str { "scale" }
///     fn output_shape(&self, input_shape: &[usize]) -> Result<Vec<usize>> { Ok(input_shape.to_vec()) }
///     fn forward(&mut self, x: ArrayViewD<'_, f64>, train: bool) -> Result<ArrayD<f64>> {
///         if train { self.x = Some(x.to_owned()); }
///         Ok(x.mapv(|v| self.w * v))
///     }
///     fn backward(&mut self, grad_out: ArrayViewD<'_, f64>) -> Result<()> {
///         let x = self.x.as_ref().expect("forward(train = true) first");
///         self.grad += (x * &grad_out).sum();
///         Ok(())
///     }
///     fn step(&mut self) -> Result<()> { self.w -= 0.1 * self.grad; self.grad = 0.0; Ok(()) }
///     fn params(&self) -> Vec<f64> { vec![self.w] }
///     fn set_params(&mut self, p: &[f64]) -> Result<()> { self.w = p[0]; Ok(()) }
/// }
///
/// let mut s = Scale { w: 1.0, grad: 0.0, x: None };
/// let x = ndarray::arr1(&[1.0, 2.0]).into_dyn();
/// let y = s.forward(x.view(), true)?;
/// s.backward(y.view())?;           // d(0.5 |y|^2)/dy = y
/// s.step()?;                        // w = 1 - 0.1 * (1 + 4)
/// assert!((s.params()[0] - 0.5).abs() < 1e-12);
/// let mut saved = Vec::new();
/// s.save(&mut saved)?;              // the default: the flat parameters
/// s.set_params(&[9.0])?;
/// s.load(&mut saved.as_slice())?;
/// assert_eq!(s.params(), vec![0.5]);
/// # let _ = Axis(0);
/// # Ok::<(), dlm_core::DlmError>(())
/// ```
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

    /// All parameters, flattened in a fixed order (for checks, tests and the default `save`).
    fn params(&self) -> Vec<f64>;

    /// Replaces all parameters (same order and length as [`params`](Scorer::params)).
    fn set_params(&mut self, params: &[f64]) -> Result<()>;

    /// Clears accumulated gradients (default: nothing to clear).
    fn zero_grad(&mut self) {}

    /// Number of scalar parameters (default: the length of [`params`](Scorer::params)).
    fn num_params(&self) -> usize {
        self.params().len()
    }

    /// Accumulated gradients, in the order of [`params`](Scorer::params) (default: empty, i.e.
    /// not exposed).
    fn grads(&self) -> Vec<f64> {
        Vec::new()
    }

    /// Writes the scorer's weights (default: `u64` count, then the parameters as `f64`,
    /// little-endian; optimizer state is not kept).
    fn save(&self, w: &mut dyn Write) -> Result<()> {
        let p = self.params();
        let mut bytes = Vec::with_capacity(8 + 8 * p.len());
        bytes.extend_from_slice(&(p.len() as u64).to_le_bytes());
        for v in &p {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        w.write_all(&bytes)
            .map_err(|e| DlmError::io("writing", format!("{} weights", self.name()), e))
    }

    /// Reads weights written by [`save`](Scorer::save), refusing malformed input (default: the
    /// format of the default `save`; the count must equal [`num_params`](Scorer::num_params)).
    fn load(&mut self, r: &mut dyn Read) -> Result<()> {
        let what = format!("{} weights", self.name());
        let bad = |m: String| DlmError::format(&what, "model file", m);
        let mut head = [0u8; 8];
        r.read_exact(&mut head)
            .map_err(|e| bad(format!("missing parameter count: {e}")))?;
        let count = u64::from_le_bytes(head);
        let expected = self.num_params();
        if count != expected as u64 {
            return Err(bad(format!(
                "{count} parameters stored, but this scorer has {expected}"
            )));
        }
        let mut bytes = vec![0u8; 8 * expected];
        r.read_exact(&mut bytes)
            .map_err(|e| bad(format!("truncated parameters: {e}")))?;
        let p: Vec<f64> = bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        self.set_params(&p)
    }

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
                hint:
                    "keep it on cpu, or use a scorer that supports other devices (the torch plugin)"
                        .into(),
            })
        }
    }
}
