//! Task losses `l(y_true, y)` and their linear forms.

use crate::error::Result;
use ndarray::ArrayViewMutD;

/// The ground truth of one example, as a loss needs it.
///
/// * `truth`: the active set of the true structure (e.g. the flat indices of the true
///   permutation matrix), or empty when the loss needs none;
/// * `weights`: per-part weights whose meaning the loss defines (e.g. `x_j^2` for the sorting
///   loss, the label-mismatch indicator of each candidate for the k-NN loss).
///
/// **True cost vectors** (decision-focused tasks, read by the `spo+` estimator): `weights` is
/// the example's true cost vector `c`, one entry per part of the structure (the potentials'
/// length, flat row-major order), so that the true potentials are `theta = -c` (the solver
/// maximises `<theta, phi(y)>`, i.e. minimises the cost) and `truth` is the active set of an
/// optimal solution for `c`. A loss used with such targets reads `weights` the same way (e.g.
/// the regret `<c, phi(y)> - min_w <c, phi(w)>`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Target {
    /// Active set of the true structure.
    pub truth: Vec<usize>,
    /// Loss-specific weights.
    pub weights: Vec<f64>,
}

/// A task loss `l(y_true, y)` (lower is better).
///
/// # Example
/// The number of true parts a prediction misses, `l = |truth| - <1_truth, phi(y)>`: linear, so
/// the loss-augmented argmax is the plain solver on `theta + eps * L`.
/// ```
/// use dlm_core::{Loss, Result, Target};
/// use ndarray::{ArrayD, ArrayViewMutD, IxDyn};
///
/// struct Missed;
/// impl Loss for Missed {
///     fn name(&self) -> &str { "missed" }
///     fn value(&self, t: &Target, _shape: &[usize], active: &[usize]) -> Result<f64> {
///         Ok(t.truth.iter().filter(|i| !active.contains(i)).count() as f64)
///     }
///     fn linear_form(&self, t: &Target, mut out: ArrayViewMutD<'_, f64>) -> Result<Option<f64>> {
///         out.fill(0.0);
///         for &i in &t.truth { out.as_slice_mut().unwrap()[i] = -1.0; }
///         Ok(Some(t.truth.len() as f64))
///     }
/// }
///
/// let t = Target { truth: vec![0, 3], weights: vec![] };
/// let y = [0, 2];
/// let mut lin = ArrayD::zeros(IxDyn(&[4]));
/// let c = Missed.linear_form(&t, lin.view_mut())?.unwrap();
/// let linear: f64 = y.iter().map(|&i| lin[[i]]).sum();
/// assert_eq!(Missed.value(&t, &[4], &y)?, c + linear); // 1 = 2 - 1
/// # Ok::<(), dlm_core::DlmError>(())
/// ```
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
