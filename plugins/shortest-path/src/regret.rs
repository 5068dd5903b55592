//! The `regret` loss and PyEPO's normalized regret.
//!
//! For a true cost vector `c` (one entry per part of the structure: per arc for
//! `grid-edges`, per cell for `grid-vertex`) and its optimal solution `w*(c)`, a decision `y`
//! has regret
//!
//! ```text
//!   l(y) = <c, phi(y)> - <c, phi(w*(c))>   (>= 0 when the truth is optimal under c)
//! ```
//!
//! the excess true cost of acting on `y` (PyEPO's "SPO loss"). It is linear in `phi(y)`:
//! `L = c`, constant `-<c, phi(truth)>`, so DLM's loss-augmented argmax is the plain solver on
//! `theta + eps * c` and DLM minimises the expected regret directly.
//!
//! **Target:** [`Target::weights`] = the true costs `c` (length = number of parts, i.e. the
//! product of the potentials shape), [`Target::truth`] = the optimal solution under `c` as an
//! active set (build both with [`regret_target`]). The loss does not re-solve: it trusts the
//! truth to be optimal.

use dlm_core::error::ensure_finite;
use dlm_core::{DlmError, Loss, Result, StructuredArgmax, Target};
use ndarray::{ArrayD, ArrayViewMutD, IxDyn};

/// The constant PyEPO adds to the denominator of the normalized regret
/// (`pyepo.utils._EPS`), so that a test set whose optima are all 0 gives a finite number.
pub const NORMALIZED_REGRET_EPS: f64 = 1e-8;

/// The decision regret `<c, phi(y)> - <c, phi(truth)>` (see the [module docs](self)).
#[derive(Debug, Clone, Copy, Default)]
pub struct Regret;

/// The costs of `target`, checked: one per part, finite.
fn costs(target: &Target, parts: usize) -> Result<&[f64]> {
    if target.weights.len() != parts {
        return Err(DlmError::invalid(
            "regret target",
            format!(
                "needs the true cost vector as weights, one cost per part of the potentials \
                 ({parts}), got {} weights",
                target.weights.len()
            ),
        ));
    }
    ensure_finite("regret target costs (weights)", &target.weights)?;
    Ok(&target.weights)
}

/// `<c, phi(y)>` for an active set, each index checked against `c`.
fn cost_of(c: &[f64], active: &[usize], what: &str) -> Result<f64> {
    active.iter().try_fold(0.0, |s, &i| match c.get(i) {
        Some(v) => Ok(s + v),
        None => Err(DlmError::invalid(
            what,
            format!(
                "index {i} is outside the {} parts of the cost vector",
                c.len()
            ),
        )),
    })
}

/// The true optimum `z* = <c, phi(truth)>` of a regret target.
fn optimum(target: &Target, c: &[f64]) -> Result<f64> {
    if target.truth.is_empty() {
        return Err(DlmError::invalid(
            "regret target",
            "the truth is empty: it must be the optimal solution under the costs (see regret_target)",
        ));
    }
    cost_of(c, &target.truth, "regret target truth")
}

impl Loss for Regret {
    fn name(&self) -> &str {
        "regret"
    }

    fn value(&self, target: &Target, shape: &[usize], active: &[usize]) -> Result<f64> {
        let c = costs(target, shape.iter().product())?;
        Ok(cost_of(c, active, "regret prediction")? - optimum(target, c)?)
    }

    fn linear_form(&self, target: &Target, mut out: ArrayViewMutD<'_, f64>) -> Result<Option<f64>> {
        let c = costs(target, out.len())?;
        let z = optimum(target, c)?;
        match out.as_slice_mut() {
            Some(s) => s.copy_from_slice(c),
            None => out.iter_mut().zip(c).for_each(|(o, &v)| *o = v),
        }
        Ok(Some(-z))
    }
}

/// The regret target of a true cost vector: `weights = costs`, `truth = ` the structure's
/// argmax on `theta = -costs` (its optimal solution: the shortest path), for potentials of
/// `shape`.
///
/// ```
/// use dlm_plugin_shortest_path::{regret_target, GridEdges};
/// let g = GridEdges::new(2, 2)?; // arcs: 0 = (0,1), 1 = (0,2), 2 = (1,3), 3 = (2,3)
/// let t = regret_target(&g, &[4], &[1.0, 2.0, 5.0, 0.5])?;
/// assert_eq!(t.truth, vec![1, 3]); // down then right: 2.5 < 6
/// # Ok::<(), dlm_core::DlmError>(())
/// ```
pub fn regret_target(
    structure: &dyn StructuredArgmax,
    shape: &[usize],
    costs: &[f64],
) -> Result<Target> {
    let parts: usize = shape.iter().product();
    if costs.len() != parts {
        return Err(DlmError::shape(
            "regret costs",
            format!("{parts} costs, one per part of potentials {shape:?}"),
            &[costs.len()],
        ));
    }
    ensure_finite("regret costs", costs)?;
    let theta = ArrayD::from_shape_vec(IxDyn(shape), costs.iter().map(|&c| 0.0 - c).collect())
        .map_err(|e| DlmError::invalid("regret costs", e.to_string()))?;
    let mut truth = Vec::new();
    structure.argmax(theta.view(), &mut truth)?;
    Ok(Target {
        truth,
        weights: costs.to_vec(),
    })
}

/// Accumulates the regret of decisions over a test set, for PyEPO's normalized regret
/// `sum_i (c_i^T w_hat_i - z*_i) / (sum_i |z*_i| + 1e-8)`.
///
/// ```
/// use dlm_core::Target;
/// use dlm_plugin_shortest_path::RegretTally;
/// let t = Target { truth: vec![0], weights: vec![2.0, 3.0] };
/// let mut tally = RegretTally::default();
/// tally.add(&t, &[1])?; // regret 1, optimum 2
/// tally.add(&t, &[0])?; // regret 0, optimum 2
/// assert_eq!(tally.count, 2);
/// assert!((tally.normalized() - 0.25).abs() < 1e-8);
/// # Ok::<(), dlm_core::DlmError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RegretTally {
    /// `sum_i (c_i^T w_hat_i - z*_i)`.
    pub regret: f64,
    /// `sum_i |z*_i|`.
    pub abs_optimum: f64,
    /// Instances added.
    pub count: usize,
}

impl RegretTally {
    /// Adds one instance: its [regret target](regret_target) and the predicted decision
    /// (active set). Errors for a malformed target or a prediction outside the cost vector.
    pub fn add(&mut self, target: &Target, prediction: &[usize]) -> Result<()> {
        let c = &target.weights;
        ensure_finite("regret target costs (weights)", c)?;
        let z = optimum(target, c)?;
        let got = cost_of(c, prediction, "regret prediction")?;
        self.regret += got - z;
        self.abs_optimum += z.abs();
        self.count += 1;
        Ok(())
    }

    /// PyEPO's normalized regret, `regret / (abs_optimum + 1e-8)`
    /// ([`NORMALIZED_REGRET_EPS`]); 0 when nothing was added.
    pub fn normalized(&self) -> f64 {
        self.regret / (self.abs_optimum + NORMALIZED_REGRET_EPS)
    }

    /// The mean regret per instance (0 when nothing was added).
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.regret / self.count as f64
        }
    }
}

/// PyEPO's normalized regret of `predictions` (active sets) on `targets` (from
/// [`regret_target`]): `sum_i (c_i^T w_hat_i - z*_i) / (sum_i |z*_i| + 1e-8)`, as
/// `pyepo.metric.regret(..., reduction="normalized")` computes it. Errors when the two lists
/// differ in length or are empty, or for a malformed target.
pub fn normalized_regret(targets: &[Target], predictions: &[Vec<usize>]) -> Result<f64> {
    if targets.len() != predictions.len() {
        return Err(DlmError::invalid(
            "normalized regret",
            format!(
                "{} targets but {} predictions; give one prediction per instance",
                targets.len(),
                predictions.len()
            ),
        ));
    }
    if targets.is_empty() {
        return Err(DlmError::Empty {
            what: "normalized regret".into(),
            hint: "give at least one test instance".into(),
        });
    }
    let mut tally = RegretTally::default();
    for (t, p) in targets.iter().zip(predictions) {
        tally.add(t, p)?;
    }
    Ok(tally.normalized())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_and_linear_form() {
        let t = Target {
            truth: vec![1, 3],
            weights: vec![1.0, 2.0, 5.0, 0.5],
        };
        assert_eq!(Regret.value(&t, &[4], &[1, 3]).unwrap(), 0.0);
        assert_eq!(Regret.value(&t, &[4], &[0, 2]).unwrap(), 6.0 - 2.5);
        let mut l = ArrayD::zeros(IxDyn(&[4]));
        let c = Regret.linear_form(&t, l.view_mut()).unwrap().unwrap();
        assert_eq!(c, -2.5);
        assert_eq!(l.as_slice().unwrap(), &[1.0, 2.0, 5.0, 0.5]);
    }

    #[test]
    fn clear_errors() {
        let t = Target {
            truth: vec![1, 3],
            weights: vec![1.0, 2.0, 5.0],
        };
        let e = Regret.value(&t, &[4], &[0]).unwrap_err().to_string();
        assert!(e.contains("(4)") && e.contains("3 weights"), "{e}");
        let mut l = ArrayD::zeros(IxDyn(&[4]));
        assert!(Regret.linear_form(&t, l.view_mut()).is_err());
        let t = Target {
            truth: vec![],
            weights: vec![1.0; 4],
        };
        assert!(Regret
            .value(&t, &[4], &[0])
            .unwrap_err()
            .to_string()
            .contains("empty"));
        let t = Target {
            truth: vec![7],
            weights: vec![1.0; 4],
        };
        assert!(Regret
            .value(&t, &[4], &[0])
            .unwrap_err()
            .to_string()
            .contains("index 7"));
        let t = Target {
            truth: vec![0],
            weights: vec![1.0, f64::NAN, 0.0, 0.0],
        };
        assert!(Regret.value(&t, &[4], &[0]).is_err());
        assert!(normalized_regret(&[], &[]).is_err());
        assert!(normalized_regret(&[t], &[]).is_err());
    }

    #[test]
    fn normalized_regret_as_pyepo() {
        let t1 = Target {
            truth: vec![0],
            weights: vec![2.0, 3.0],
        };
        let t2 = Target {
            truth: vec![1],
            weights: vec![4.0, 1.0],
        };
        // Regrets 1 and 3 over optima 2 and 1.
        let r = normalized_regret(&[t1.clone(), t2.clone()], &[vec![1], vec![0]]).unwrap();
        assert!((r - 4.0 / (3.0 + 1e-8)).abs() < 1e-15);
        assert_eq!(
            normalized_regret(&[t1, t2], &[vec![0], vec![1]]).unwrap(),
            0.0
        );
    }
}
