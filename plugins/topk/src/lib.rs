//! # dlm-plugin-topk
//!
//! Top-k selection: choose the `k` of `m` items with the highest potentials (the k nearest
//! neighbours when the potentials are negative squared distances). Potentials have shape
//! `[m]`; `phi(y)` is the k-hot vector of the chosen items; the active set lists them in
//! increasing index order. Ties are broken towards the lower index, so the result is
//! deterministic.
//!
//! Selection is `O(m)` on average (`select_nth_unstable_by`), not a full sort.
//!
//! Loss `label-mismatch`: the number of chosen neighbours whose label differs from the query's,
//! `l = sum_{j chosen} w_j` with `w_j = [label_j != label_query]` given as the target's
//! `weights`; it is linear with `L = w`.

use dlm_core::plugin::Registrar;
use dlm_core::structure::checked_slice;
use dlm_core::{Config, DlmError, Loss, Result, StructuredArgmax, Target};
use ndarray::{ArrayViewD, ArrayViewMutD};
use std::cell::RefCell;
use std::cmp::Ordering;

/// Top-k selection.
#[derive(Debug, Clone)]
pub struct TopK {
    k: usize,
}

thread_local! {
    static INDEX: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

impl TopK {
    /// Selects `k >= 1` items.
    pub fn new(k: usize) -> Result<Self> {
        if k == 0 {
            return Err(DlmError::invalid("topk:k", "k must be at least 1"));
        }
        Ok(TopK { k })
    }
    /// From `k=` (default 1).
    pub fn from_config(c: &Config) -> Result<Self> {
        TopK::new(c.usize("k", 1)?)
    }
    /// The number of items chosen.
    pub fn k(&self) -> usize {
        self.k
    }
}

/// Writes the indices of the `k` largest entries of `t` (ties to the lower index), ascending.
pub fn top_k_indices(t: &[f64], k: usize, idx: &mut Vec<usize>, out: &mut Vec<usize>) {
    let better = |&a: &usize, &b: &usize| -> Ordering {
        // Descending value, then ascending index: a total order on finite values.
        t[b].partial_cmp(&t[a])
            .unwrap_or(Ordering::Equal)
            .then(a.cmp(&b))
    };
    idx.clear();
    idx.extend(0..t.len());
    if k < t.len() {
        idx.select_nth_unstable_by(k - 1, better);
    }
    out.clear();
    out.extend_from_slice(&idx[..k]);
    out.sort_unstable();
}

impl StructuredArgmax for TopK {
    fn name(&self) -> &str {
        "topk"
    }
    fn check_shape(&self, shape: &[usize]) -> Result<()> {
        if shape.len() == 1 && shape[0] >= self.k {
            Ok(())
        } else {
            Err(DlmError::shape(
                "topk potentials",
                format!("[m] with m >= k = {}", self.k),
                shape,
            ))
        }
    }
    fn argmax(&self, theta: ArrayViewD<'_, f64>, out: &mut Vec<usize>) -> Result<()> {
        let t = checked_slice(self, &theta)?;
        INDEX.with(|idx| top_k_indices(t, self.k, &mut idx.borrow_mut(), out));
        Ok(())
    }
    /// All `k`-subsets (ascending indices) for `m <= 20`.
    fn enumerate(&self, shape: &[usize]) -> Result<Option<Vec<Vec<usize>>>> {
        self.check_shape(shape)?;
        let m = shape[0];
        if m > 20 {
            return Ok(None);
        }
        Ok(Some(
            (0u32..1 << m)
                .filter(|b| b.count_ones() as usize == self.k)
                .map(|b| (0..m).filter(|i| b >> i & 1 == 1).collect())
                .collect(),
        ))
    }
}

/// Number of chosen items whose label differs from the query's (weights = mismatch indicator).
#[derive(Debug, Clone, Default)]
pub struct LabelMismatch;

fn weights(target: &Target, m: usize) -> Result<&[f64]> {
    if target.weights.len() != m {
        return Err(DlmError::invalid(
            "label-mismatch target",
            format!(
                "needs one weight per candidate ({m}), got {}",
                target.weights.len()
            ),
        ));
    }
    Ok(&target.weights)
}

impl Loss for LabelMismatch {
    fn name(&self) -> &str {
        "label-mismatch"
    }
    fn value(&self, target: &Target, shape: &[usize], active: &[usize]) -> Result<f64> {
        let w = weights(target, shape.iter().product())?;
        Ok(active.iter().map(|&j| w[j]).sum())
    }
    fn linear_form(&self, target: &Target, mut out: ArrayViewMutD<'_, f64>) -> Result<Option<f64>> {
        let w = weights(target, out.len())?;
        out.as_slice_mut().expect("contiguous").copy_from_slice(w);
        Ok(Some(0.0))
    }
}

/// Registers `topk` and `label-mismatch`.
pub fn register(r: &mut Registrar<'_>) -> Result<()> {
    r.structure(
        "topk",
        "the k highest of [m] potentials (k-NN selection); option k=1",
        TopK::from_config,
    )?;
    r.loss(
        "label-mismatch",
        "k-NN loss: chosen neighbours whose label differs (weights = mismatch indicator; linear)",
        |_| Ok(LabelMismatch),
    )?;
    Ok(())
}

dlm_core::export_plugin!(register);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_and_breaks_ties_low() {
        let mut idx = Vec::new();
        let mut out = Vec::new();
        top_k_indices(&[1.0, 5.0, 5.0, 0.0, 5.0], 2, &mut idx, &mut out);
        assert_eq!(out, vec![1, 2]);
        top_k_indices(&[2.0, 1.0], 2, &mut idx, &mut out);
        assert_eq!(out, vec![0, 1]);
    }
}
