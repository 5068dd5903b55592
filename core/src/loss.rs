//! Task losses `l(y_true, y)` and their linear forms.

use crate::error::Result;
use ndarray::ArrayViewMutD;

/// The ground truth of one example, as a loss needs it.
///
/// * `truth`: the active set of the true structure (e.g. the flat indices of the true
///   permutation matrix), or empty when the loss needs none;
/// * `weights`: per-part weights whose meaning the loss defines (e.g. `x_j^2` for the sorting
///   loss, the label-mismatch indicator of each candidate for the k-NN loss).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Target {
    /// Active set of the true structure.
    pub truth: Vec<usize>,
    /// Loss-specific weights.
    pub weights: Vec<f64>,
}

/// A task loss `l(y_true, y)` (lower is better).
pub trait Loss: Send + Sync {
    /// The registered name (e.g. `hamming`).
    fn name(&self) -> &str;

    /// `l(target, y)` for the solution with active set `active` on potentials of `shape`.
    fn value(&self, target: &Target, shape: &[usize], active: &[usize]) -> Result<f64>;

    /// If the loss is linear in the indicator, `l(target, y) = c + <L, phi(y)>`: writes `L`
    /// into `out` (shape of the potentials) and returns `Some(c)`. The loss-augmented argmax
    /// is then the ordinary solver on `theta + eps * L`. `None` (the default) means no linear
    /// form: the structure must provide
    /// [`argmax_loss_augmented`](crate::StructuredArgmax::argmax_loss_augmented).
    fn linear_form(&self, target: &Target, out: ArrayViewMutD<'_, f64>) -> Result<Option<f64>> {
        let _ = (target, out);
        Ok(None)
    }
}
