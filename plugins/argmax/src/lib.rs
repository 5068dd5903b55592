//! # dlm-plugin-argmax
//!
//! The unstructured case: multiclass argmax over `C` classes. Potentials have shape `[C]`,
//! `phi(y)` is the one-hot vector of class `y`. With full-dimensional Gumbel noise this is
//! exactly the Gumbel-max trick, so the softmax identities of the seed hold exactly here.
//!
//! Loss `zero-one`: `l(t, y) = [y != t] = 1 + <-e_t, phi(y)>` (target: `truth = [t]`).

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

/// The 0/1 loss of multiclass prediction.
#[derive(Debug, Clone, Default)]
pub struct ZeroOne;

fn class_of(target: &Target) -> Result<usize> {
    match target.truth.as_slice() {
        [t] => Ok(*t),
        other => Err(DlmError::invalid(
            "zero-one target",
            format!("expected exactly one true class, got {other:?}"),
        )),
    }
}

impl Loss for ZeroOne {
    fn name(&self) -> &str {
        "zero-one"
    }
    fn value(&self, target: &Target, _shape: &[usize], active: &[usize]) -> Result<f64> {
        Ok(if active == [class_of(target)?] {
            0.0
        } else {
            1.0
        })
    }
    fn linear_form(&self, target: &Target, mut out: ArrayViewMutD<'_, f64>) -> Result<Option<f64>> {
        let t = class_of(target)?;
        if t >= out.len() {
            return Err(DlmError::invalid(
                "zero-one target",
                format!("class {t} but only {} classes", out.len()),
            ));
        }
        out.fill(0.0);
        out.as_slice_mut().expect("contiguous")[t] = -1.0;
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
        "0/1 loss for argmax (linear: L = -e_true, c = 1)",
        |_| Ok(ZeroOne),
    )?;
    Ok(())
}

dlm_core::export_plugin!(register);

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr1;

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
