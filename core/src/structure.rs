//! Structures: `argmax_y <theta, phi(y)>` over a finite set of discrete structures.
//!
//! A structure defines the shape of its potentials array `theta` and the indicator `phi(y)`
//! of each solution, an array of the same shape with entries in {0, 1}, so that the score of
//! `y` is `<theta, phi(y)>`. A solution is passed around as its **active set**: the flat
//! (row-major) indices where `phi(y) = 1`, in the structure's canonical order. Gradients of
//! the DLM estimator are differences of indicators, so this sparse form is all the engine
//! needs; [`write_phi`] expands it when a dense array is wanted.

use crate::error::{DlmError, Result};
use crate::loss::{Loss, Target};
use ndarray::{ArrayViewD, ArrayViewMutD};

/// A combinatorial solver: the maximiser of a linear score over a structured set.
///
/// One required method does the work ([`argmax`](StructuredArgmax::argmax)); the others have
/// defaults that a fast implementation may override (e.g. warm starts in
/// [`argmax_pair`](StructuredArgmax::argmax_pair)).
///
/// # Contract
/// * `argmax` returns an optimal active set for every finite `theta` of a valid shape, and
///   is deterministic: equal inputs give equal outputs (ties broken by a fixed rule).
/// * It refuses NaN/inf potentials and wrong shapes with an error, never a panic.
///
/// `dlm-testkit` checks all of this (and more) by brute force on small instances.
///
/// # Example
/// Multiclass argmax, the smallest structure: potentials `[C]`, `phi(y)` one-hot.
/// ```
/// use dlm_core::structure::{checked_slice, score};
/// use dlm_core::{Result, StructuredArgmax};
/// use ndarray::{arr1, ArrayViewD};
///
/// struct Best;
/// impl StructuredArgmax for Best {
///     fn name(&self) -> &str { "best" }
///     fn check_shape(&self, shape: &[usize]) -> Result<()> {
///         if shape.len() == 1 && shape[0] > 0 { Ok(()) }
///         else { Err(dlm_core::DlmError::shape("best potentials", "[C], C >= 1", shape)) }
///     }
///     fn argmax(&self, theta: ArrayViewD<'_, f64>, out: &mut Vec<usize>) -> Result<()> {
///         let t = checked_slice(self, &theta)?; // shape, NaN/inf, contiguity checked
///         let best = (1..t.len()).fold(0, |b, i| if t[i] > t[b] { i } else { b });
///         out.clear();
///         out.push(best);
///         Ok(())
///     }
///     fn enumerate(&self, shape: &[usize]) -> Result<Option<Vec<Vec<usize>>>> {
///         self.check_shape(shape)?;
///         Ok(Some((0..shape[0]).map(|c| vec![c]).collect()))
///     }
/// }
///
/// let theta = arr1(&[0.5, 2.0, -1.0]).into_dyn();
/// let mut y = Vec::new();
/// Best.argmax(theta.view(), &mut y)?;
/// assert_eq!(y, vec![1]);
/// assert_eq!(score(&theta.view(), &y), 2.0);
/// assert!(Best.argmax(arr1(&[f64::NAN]).into_dyn().view(), &mut y).is_err());
/// # Ok::<(), dlm_core::DlmError>(())
/// ```
pub trait StructuredArgmax: Send + Sync {
    /// The registered name (e.g. `matching`).
    fn name(&self) -> &str;

    /// Checks that `shape` is a valid potentials shape for this structure.
    fn check_shape(&self, shape: &[usize]) -> Result<()>;

    /// Writes the active set of `argmax_y <theta, phi(y)>` into `out` (cleared first).
    fn argmax(&self, theta: ArrayViewD<'_, f64>, out: &mut Vec<usize>) -> Result<()>;

    /// Solves `theta` and the loss-augmented `theta_aug` (= `theta + eps * L`) together.
    ///
    /// The default makes two independent calls; solvers that can reuse the first solve (dual
    /// variables, a warm start) override it. Both results must be optimal (exact ties may be
    /// broken differently from two separate [`argmax`](StructuredArgmax::argmax) calls) and
    /// depend only on the two arrays, never on earlier calls. Between its two solves the
    /// default calls [`profile::pair_mark`](crate::profile::pair_mark) (one atomic load unless
    /// `dlm train --profile`), so that a profile can tell the plain solve's time from the
    /// augmented one's; an override may do the same.
    fn argmax_pair(
        &self,
        theta: ArrayViewD<'_, f64>,
        theta_aug: ArrayViewD<'_, f64>,
        out: &mut Vec<usize>,
        out_aug: &mut Vec<usize>,
    ) -> Result<()> {
        self.argmax(theta, out)?;
        crate::profile::pair_mark();
        self.argmax(theta_aug, out_aug)
    }

    /// Loss-augmented argmax for losses without a linear form: writes into `out` (cleared
    /// first) the active set of a maximiser of
    ///
    /// ```text
    ///   <theta, phi(y)> + eps * loss.value(target, shape, y)
    /// ```
    ///
    /// over all solutions `y` of the structure. The estimator calls it, once per draw and again
    /// after each `|eps|` escape, when [`Loss::linear_form`] returns `None` for some example
    /// of the batch (otherwise it solves `theta + eps * L` with
    /// [`argmax_pair`](StructuredArgmax::argmax_pair)); `theta` are the perturbed potentials.
    /// The default refuses with [`DlmError::NonDecomposableLoss`].
    ///
    /// # Contract
    /// * **Which losses.** An implementation recognises the losses it can maximise exactly
    ///   (e.g. by [`Loss::name`]) and refuses every other one with
    ///   [`DlmError::NonDecomposableLoss`], as the default does.
    /// * **Inputs.** `eps` may have either sign (the estimator never passes 0; `eps = 0` may
    ///   simply return the plain argmax). NaN/inf in `theta` or `eps`, a wrong shape, or a
    ///   `target` that is not valid for this structure (e.g. a truth that is not one of its
    ///   solutions) give an error, never a panic.
    /// * **Output.** `out` is the canonical active set of the maximiser, in the same order as
    ///   [`argmax`](StructuredArgmax::argmax) writes it, so that it can be compared with
    ///   `argmax`'s output element by element (the estimator counts a zero direction when
    ///   the two vectors are equal) and with the truth by the loss.
    /// * **Exactness.** The result is a maximiser of the augmented objective (up to the
    ///   rounding of floating-point scores), not an approximation.
    /// * **Ties.** Which of several maximisers is returned is the structure's rule, documented
    ///   on its implementation; it must be deterministic: equal inputs give equal outputs, and
    ///   the output must not depend on earlier calls (thread-local scratch, warm starts), so
    ///   that results do not depend on how work is spread over threads.
    fn argmax_loss_augmented(
        &self,
        theta: ArrayViewD<'_, f64>,
        loss: &dyn Loss,
        target: &Target,
        eps: f64,
        out: &mut Vec<usize>,
    ) -> Result<()> {
        let _ = (theta, target, eps, out);
        Err(DlmError::NonDecomposableLoss {
            loss: loss.name().to_string(),
            structure: self.name().to_string(),
        })
    }

    /// A compact, human-readable form of a solution (e.g. the permutation `col_of_row` for a
    /// matching, the chosen indices for top-k). The default is the active set itself.
    fn decode(&self, shape: &[usize], active: &[usize]) -> Vec<usize> {
        let _ = shape;
        active.to_vec()
    }

    /// Every feasible solution of a **small** instance of `shape`, as active sets in canonical
    /// order: the ground truth of the test kit's brute-force checks (`dlm-testkit`), never
    /// called in training. `Ok(None)` (the default) means the structure does not list its
    /// solutions (or not for a shape this large); the kit then checks optimality against the
    /// solutions it discovers by probing, and says so.
    fn enumerate(&self, shape: &[usize]) -> Result<Option<Vec<Vec<usize>>>> {
        let _ = shape;
        Ok(None)
    }
}

/// `<theta, phi(y)>` for the active set of `y` (`theta` in standard layout or not).
pub fn score(theta: &ArrayViewD<'_, f64>, active: &[usize]) -> f64 {
    match theta.as_slice() {
        Some(s) => active.iter().map(|&i| s[i]).sum(),
        None => {
            let flat: Vec<f64> = theta.iter().copied().collect();
            active.iter().map(|&i| flat[i]).sum()
        }
    }
}

/// Writes the 0/1 indicator `phi(y)` of an active set into `phi` (all other entries zeroed).
pub fn write_phi(active: &[usize], phi: &mut ArrayViewMutD<'_, f64>) -> Result<()> {
    let len = phi.len();
    phi.fill(0.0);
    let Some(s) = phi.as_slice_mut() else {
        return Err(DlmError::Unsupported {
            component: "write_phi".into(),
            what: "non-contiguous output arrays".into(),
            hint: "pass a standard-layout array".into(),
        });
    };
    for &i in active {
        if i >= len {
            return Err(DlmError::invalid(
                "active set",
                format!("index {i} is outside an array of {len} entries"),
            ));
        }
        s[i] = 1.0;
    }
    Ok(())
}

/// Checks the shape and finiteness of `theta` for `structure` and returns it as a contiguous slice.
pub fn checked_slice<'a>(
    structure: &dyn StructuredArgmax,
    theta: &'a ArrayViewD<'_, f64>,
) -> Result<&'a [f64]> {
    structure.check_shape(theta.shape())?;
    let s = theta.as_slice().ok_or_else(|| DlmError::Unsupported {
        component: format!("structure '{}'", structure.name()),
        what: "non-contiguous potentials".into(),
        hint: "pass a standard-layout (row-major) array".into(),
    })?;
    crate::error::ensure_finite("potentials", s)?;
    Ok(s)
}
