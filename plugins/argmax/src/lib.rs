//! # dlm-plugin-argmax
//!
//! The unstructured case: multiclass argmax over `C` classes. Potentials have shape `[C]`,
//! `phi(y)` is the one-hot vector of class `y`. With full-dimensional Gumbel noise this is
//! exactly the Gumbel-max trick, so the softmax identities of the seed hold exactly here.
//!
//! Loss `zero-one` (exact match), for any structure: `l(t, y) = [y != t]`, 0 when the
//! predicted active set equals the truth's, 1 otherwise (see [`ZeroOne`]). On `[C]` potentials
//! with a one-element truth (this argmax) it is linear, `l = 1 + <-e_t, phi(y)>`; elsewhere it
//! has no linear form and the structure's loss-augmented argmax is used (e.g. `matching`).

use dlm_core::plugin::Registrar;
use dlm_core::structure::checked_slice;
use dlm_core::{DlmError, Loss, Result, StructuredArgmax, Target};
use ndarray::{ArrayViewD, ArrayViewMutD};

/// Multiclass argmax; ties go to the lowest class index.
#[derive(Debug, Clone, Default)]
pub struct Argmax;

impl StructuredArgmax for Argmax {
    fn name(&self) -> &str {
        "argmax"
    }
    fn check_shape(&self, shape: &[usize]) -> Result<()> {
        if shape.len() == 1 && shape[0] >= 1 {
            Ok(())
        } else {
            Err(DlmError::shape(
                "argmax potentials",
                "[C] with C >= 1",
                shape,
            ))
        }
    }
    fn argmax(&self, theta: ArrayViewD<'_, f64>, out: &mut Vec<usize>) -> Result<()> {
        let t = checked_slice(self, &theta)?;
        let mut best = 0;
        for (i, &v) in t.iter().enumerate().skip(1) {
            if v > t[best] {
                best = i;
            }
        }
        out.clear();
        out.push(best);
        Ok(())
    }
    /// The `C` one-hot solutions.
    fn enumerate(&self, shape: &[usize]) -> Result<Option<Vec<Vec<usize>>>> {
        self.check_shape(shape)?;
        Ok(Some((0..shape[0]).map(|c| vec![c]).collect()))
    }
}

/// The zero-one (exact match) loss `l(t, y) = [y != t]`, for any structure.
///
/// # Target
/// `truth` is the active set of the true structure (for argmax: `[t]`, the true class). It
/// must not be empty: an empty `truth` means "no truth given" (see [`Target`]), so it is
/// refused with an error. `weights` are ignored.
///
/// # Value
/// 0 when the predicted active set and `truth` hold the same flat indices, 1 otherwise. They
/// are compared as sets: first as vectors (the fast path, since structures write their
/// canonical order and the truth should be given in it too), then, if the lengths agree, as
/// sorted copies, so a truth listed in another order still counts as equal. (Active sets
/// never repeat an index; if one did, the repeats would have to agree too.) The shape is not
/// used: an index outside the potentials simply never matches.
///
/// # Linear form
/// `[y != t] = 1 - phi_t(y)`, i.e. `L = -e_t`, `c = 1`, holds exactly only when every
/// solution of the structure has exactly one active part, so that `phi(y)` is one-hot. The
/// loss cannot see the structure, so it assumes this from what it can see:
/// [`linear_form`](Loss::linear_form) returns `Some(1)` with `L = -e_t` exactly when the
/// potentials have rank 1 (shape `[C]`) and `truth` has exactly one element `t < C` (an
/// argmax-like structure: `argmax`, or `topk` with `k = 1`). A rank-1 structure whose
/// solutions have several parts must therefore not be given a one-element truth (for `topk`
/// with `k >= 2` such a truth is not a solution at all). In every other case (potentials of
/// rank >= 2 such as `matching`, or a truth with several parts) it returns `None`, and the
/// estimator calls the structure's
/// [`argmax_loss_augmented`](dlm_core::StructuredArgmax::argmax_loss_augmented), which a
/// structure supporting this loss recognises by the name `zero-one`.
#[derive(Debug, Clone, Default)]
pub struct ZeroOne;

fn truth_of(target: &Target) -> Result<&[usize]> {
    if target.truth.is_empty() {
        return Err(DlmError::invalid(
            "zero-one target",
            "the truth is empty; give the active set of the true structure (e.g. [class] for argmax)",
        ));
    }
    Ok(&target.truth)
}

/// Whether two active sets hold the same indices (in any order).
fn same_set(a: &[usize], b: &[usize]) -> bool {
    if a == b {
        return true;
    }
    if a.len() != b.len() {
        return false;
    }
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

impl Loss for ZeroOne {
    fn name(&self) -> &str {
        "zero-one"
    }
    fn value(&self, target: &Target, _shape: &[usize], active: &[usize]) -> Result<f64> {
        Ok(if same_set(active, truth_of(target)?) {
            0.0
        } else {
            1.0
        })
    }
    fn linear_form(&self, target: &Target, mut out: ArrayViewMutD<'_, f64>) -> Result<Option<f64>> {
        let &[t] = truth_of(target)? else {
            return Ok(None);
        };
        if out.ndim() != 1 {
            return Ok(None);
        }
        if t >= out.len() {
            return Err(DlmError::invalid(
                "zero-one target",
                format!("class {t} but only {} classes", out.len()),
            ));
        }
        out.fill(0.0);
        out[[t].as_slice()] = -1.0;
        Ok(Some(1.0))
    }
}

/// Registers `argmax` and `zero-one`.
pub fn register(r: &mut Registrar<'_>) -> Result<()> {
    r.structure(
        "argmax",
        "multiclass argmax over [C] potentials (ties: lowest index)",
        |_| Ok(Argmax),
    )?;
    r.loss(
        "zero-one",
        "exact-match 0/1 loss for any structure; linear (L = -e_true, c = 1) on [C] potentials with one true part (argmax), else the structure's loss-augmented argmax (e.g. matching)",
        |_| Ok(ZeroOne),
    )?;
    Ok(())
}

dlm_core::export_plugin!(register);

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{arr1, ArrayD, IxDyn};

    fn target(truth: &[usize]) -> Target {
        Target {
            truth: truth.to_vec(),
            weights: vec![],
        }
    }

    fn linear(truth: &[usize], shape: &[usize]) -> Result<(Option<f64>, ArrayD<f64>)> {
        let mut l = ArrayD::from_elem(IxDyn(shape), 7.0);
        let c = ZeroOne.linear_form(&target(truth), l.view_mut())?;
        Ok((c, l))
    }

    #[test]
    fn zero_one_on_argmax_is_linear_and_exact() {
        for c in 1..=4 {
            for t in 0..c {
                let (k, l) = linear(&[t], &[c]).unwrap();
                assert_eq!(k, Some(1.0));
                assert_eq!(l.len(), c);
                for (y, &ly) in l.iter().enumerate() {
                    let v = ZeroOne.value(&target(&[t]), &[c], &[y]).unwrap();
                    assert_eq!(v, if y == t { 0.0 } else { 1.0 });
                    // c + <L, e_y> is the value for every solution of argmax.
                    assert_eq!(1.0 + ly, v);
                    assert_eq!(ly, if y == t { -1.0 } else { 0.0 });
                }
            }
        }
        // A class outside the potentials is an error, as before.
        assert!(linear(&[3], &[3]).is_err());
    }

    #[test]
    fn zero_one_without_linear_form_for_matching_and_multi_part_truths() {
        // Matching-shaped potentials: rank 2, no linear form, `out` untouched.
        let (k, l) = linear(&[1, 2], &[2, 2]).unwrap();
        assert_eq!(k, None);
        assert!(l.iter().all(|&v| v == 7.0));
        // n = 1 matching: one part, but rank 2, still none.
        assert_eq!(linear(&[0], &[1, 1]).unwrap().0, None);
        // Rank 1 with several true parts (top-k with k = 2): none.
        assert_eq!(linear(&[0, 2], &[4]).unwrap().0, None);
    }

    #[test]
    fn zero_one_value_compares_sets_for_any_structure() {
        let t = target(&[1, 2]);
        assert_eq!(ZeroOne.value(&t, &[2, 2], &[1, 2]).unwrap(), 0.0);
        assert_eq!(ZeroOne.value(&t, &[2, 2], &[2, 1]).unwrap(), 0.0);
        assert_eq!(ZeroOne.value(&t, &[2, 2], &[0, 3]).unwrap(), 1.0);
        assert_eq!(ZeroOne.value(&t, &[2, 2], &[1]).unwrap(), 1.0);
        assert_eq!(ZeroOne.value(&t, &[2, 2], &[1, 2, 3]).unwrap(), 1.0);
        assert_eq!(ZeroOne.value(&t, &[2, 2], &[]).unwrap(), 1.0);
        assert_eq!(ZeroOne.value(&t, &[2, 2], &[1, 1]).unwrap(), 1.0);
        // An empty truth is "no truth": refused by both methods.
        assert!(ZeroOne.value(&target(&[]), &[3], &[0]).is_err());
        assert!(linear(&[], &[3]).is_err());
    }

    #[test]
    fn ties_go_to_lowest_index_and_nan_is_refused() {
        let mut out = Vec::new();
        Argmax
            .argmax(arr1(&[1.0, 3.0, 3.0]).into_dyn().view(), &mut out)
            .unwrap();
        assert_eq!(out, vec![1]);
        assert!(Argmax
            .argmax(arr1(&[1.0, f64::NAN]).into_dyn().view(), &mut out)
            .is_err());
    }
}
