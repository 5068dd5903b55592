//! Internals shared by the checks: panic-guarded calls, test instances, brute force, and the
//! kit's own multiclass argmax and zero-mean Gumbel (so that the kit needs no plugin).

use dlm_core::error::{DlmError, Result};
use dlm_core::gradient::{Batch, Estimate, NoiseKey};
use dlm_core::loss::Target;
use dlm_core::noise::{NoiseModel, EULER_GAMMA};
use dlm_core::rng::{open01, DlmRng};
use dlm_core::structure::{checked_slice, StructuredArgmax};
use ndarray::{Array1, ArrayD, ArrayViewD, IxDyn};
use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Why a call under test did not return a value.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// It returned an error.
    Error(String),
    /// It panicked (caught here, or caught by the plugin wrapper and returned as
    /// [`DlmError::PluginPanic`]).
    Panic(String),
}

impl Failure {
    pub(crate) fn is_panic(&self) -> bool {
        matches!(self, Failure::Panic(_))
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Error(e) => write!(f, "error: {e}"),
            Failure::Panic(p) => write!(f, "PANIC: {p}"),
        }
    }
}

/// Runs `f`, turning a panic into [`Failure::Panic`].
pub(crate) fn guarded<T>(f: impl FnOnce() -> Result<T>) -> std::result::Result<T, Failure> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e @ DlmError::PluginPanic { .. })) => Err(Failure::Panic(e.to_string())),
        Ok(Err(e)) => Err(Failure::Error(e.to_string())),
        Err(payload) => Err(Failure::Panic(
            payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into()),
        )),
    }
}

/// `structure.argmax(theta)`, panic-guarded.
pub(crate) fn solve(
    s: &dyn StructuredArgmax,
    theta: &ArrayD<f64>,
) -> std::result::Result<Vec<usize>, Failure> {
    let mut out = Vec::new();
    guarded(|| s.argmax(theta.view(), &mut out))?;
    Ok(out)
}

/// The kinds of random potentials the conformance checks use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Uniform in [-1, 1].
    Continuous,
    /// Integers in {0, 1, 2}: many ties.
    Ties,
    /// Equal along all but the last axis (`0.5 * last index`): tied rows.
    EqualRows,
    /// All entries 1.5.
    AllEqual,
    /// Uniform in [-5e8, 5e8].
    Large,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Continuous => "continuous",
            Kind::Ties => "integer ties",
            Kind::EqualRows => "equal rows",
            Kind::AllEqual => "all equal",
            Kind::Large => "large magnitude",
        }
    }
}

/// Random potentials of `kind`.
pub(crate) fn random_theta(shape: &[usize], rng: &mut DlmRng, kind: Kind) -> ArrayD<f64> {
    ArrayD::from_shape_fn(IxDyn(shape), |ix| match kind {
        Kind::Continuous => open01(rng) * 2.0 - 1.0,
        Kind::Ties => (open01(rng) * 3.0).floor(),
        Kind::EqualRows => shape.len().checked_sub(1).map_or(0, |l| ix[l]) as f64 * 0.5,
        Kind::AllEqual => 1.5,
        Kind::Large => (open01(rng) - 0.5) * 1e9,
    })
}

fn num(v: f64) -> String {
    if v == v.round() && v.abs() < 1e6 {
        format!("{v:.0}")
    } else if v.abs() >= 1e4 || (v != 0.0 && v.abs() < 1e-3) {
        format!("{v:.4e}")
    } else {
        format!("{v:.4}")
    }
}

/// A short, readable list of numbers (at most 16 shown).
pub(crate) fn fmt_values(v: &[f64]) -> String {
    let shown: Vec<String> = v.iter().take(16).map(|&x| num(x)).collect();
    if v.len() > 16 {
        format!("[{}, ... {} more]", shown.join(", "), v.len() - 16)
    } else {
        format!("[{}]", shown.join(", "))
    }
}

/// `shape [..], theta [..]` of an instance.
pub(crate) fn instance(theta: &ArrayD<f64>) -> String {
    let flat: Vec<f64> = theta.iter().copied().collect();
    format!("shape {:?}, theta {}", theta.shape(), fmt_values(&flat))
}

/// `<theta, phi(y)>` for an active set of in-range indices of a flat slice.
pub(crate) fn score_of(theta: &[f64], active: &[usize]) -> f64 {
    active.iter().map(|&i| theta[i]).sum()
}

/// The sorted copy of an active set (solutions are compared as sets).
pub(crate) fn sorted(a: &[usize]) -> Vec<usize> {
    let mut s = a.to_vec();
    s.sort_unstable();
    s
}

/// Where the kit's ground truth for a shape came from.
#[derive(Debug, Clone)]
pub(crate) struct Solutions {
    /// The feasible solutions (active sets, as given by `enumerate` or as returned by argmax).
    pub list: Vec<Vec<usize>>,
    /// The same, sorted, for membership tests.
    pub set: BTreeSet<Vec<usize>>,
    /// True when `list` is the structure's own `enumerate`; false when discovered by probing.
    pub enumerated: bool,
}

impl Solutions {
    pub(crate) fn new(list: Vec<Vec<usize>>, enumerated: bool) -> Solutions {
        let set = list.iter().map(|s| sorted(s)).collect();
        Solutions {
            list,
            set,
            enumerated,
        }
    }

    pub(crate) fn contains(&self, active: &[usize]) -> bool {
        self.set.contains(&sorted(active))
    }

    /// "the N enumerated solutions" / "N solutions discovered by probing (enumerate returns
    /// None)".
    pub(crate) fn source(&self) -> String {
        if self.enumerated {
            format!("{} enumerated solutions", self.list.len())
        } else {
            format!(
                "{} solutions discovered by probing (enumerate returns None)",
                self.list.len()
            )
        }
    }

    /// The best score over the list and one maximiser.
    pub(crate) fn best(&self, theta: &[f64]) -> (f64, &[usize]) {
        let mut best = (f64::NEG_INFINITY, &[][..]);
        for s in &self.list {
            let v = score_of(theta, s);
            if v > best.0 {
                best = (v, s);
            }
        }
        best
    }

    /// The index of a maximiser of `theta` (first on ties), independent of any solver.
    pub(crate) fn argmax_index(&self, theta: &[f64]) -> usize {
        let mut best = (f64::NEG_INFINITY, 0);
        for (k, s) in self.list.iter().enumerate() {
            let v = score_of(theta, s);
            if v > best.0 {
                best = (v, k);
            }
        }
        best.1
    }
}

/// Runs an estimator on the single example `theta` (no batch axis; `sigma`, `target`, id 0) in
/// `chunks` independent batches, epochs `0..chunks` of `seed`: `estimate(batch, key)`, in
/// order.
pub(crate) fn estimate_in_chunks(
    theta: &ArrayD<f64>,
    sigma: f64,
    target: &Target,
    chunks: usize,
    seed: u64,
    estimate: impl Fn(&Batch<'_>, NoiseKey) -> Result<Estimate>,
) -> Result<Vec<Estimate>> {
    let mut shape = vec![1];
    shape.extend_from_slice(theta.shape());
    let theta_b = theta
        .as_standard_layout()
        .to_owned()
        .into_shape_with_order(IxDyn(&shape))
        .expect("same size");
    let sigma_b = Array1::from_elem(1, sigma);
    let targets = [target.clone()];
    (0..chunks)
        .map(|c| {
            estimate(
                &Batch {
                    theta: theta_b.view(),
                    sigma: sigma_b.view(),
                    targets: &targets,
                    example_ids: &[0],
                },
                NoiseKey {
                    seed,
                    epoch: c as u64,
                },
            )
        })
        .collect()
}

/// `stat` of each of the `m` entries of `grad_theta` over `results` (the values in the
/// results' order), and of `grad_sigma[0]`.
pub(crate) fn stats_per_entry<S>(
    results: &[Estimate],
    m: usize,
    stat: impl Fn(Vec<f64>) -> S,
) -> (Vec<S>, S) {
    let theta = (0..m)
        .map(|i| {
            stat(
                results
                    .iter()
                    .map(|r| r.grad_theta.as_slice().expect("contiguous")[i])
                    .collect(),
            )
        })
        .collect();
    let sigma = stat(results.iter().map(|r| r.grad_sigma[0]).collect());
    (theta, sigma)
}

/// Tolerance for comparing two scores of potentials `theta`: `1e-9 * max(1, sum |theta|)`.
pub(crate) fn score_tol(theta: &[f64]) -> f64 {
    1e-9 * theta.iter().map(|v| v.abs()).sum::<f64>().max(1.0)
}

/// The kit's multiclass argmax over `[C]` potentials (ties to the lowest index): the structure
/// of the Gumbel-max identities, so that they need no plugin.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Classes;

impl StructuredArgmax for Classes {
    fn name(&self) -> &str {
        "classes (kit)"
    }
    fn check_shape(&self, shape: &[usize]) -> Result<()> {
        match shape {
            [c] if *c >= 1 => Ok(()),
            _ => Err(DlmError::shape(
                "class potentials",
                "[C] with C >= 1",
                shape,
            )),
        }
    }
    fn argmax(&self, theta: ArrayViewD<'_, f64>, out: &mut Vec<usize>) -> Result<()> {
        let t = checked_slice(self, &theta)?;
        let mut best = 0;
        for (i, &v) in t.iter().enumerate() {
            if v > t[best] {
                best = i;
            }
        }
        out.clear();
        out.push(best);
        Ok(())
    }
    fn enumerate(&self, shape: &[usize]) -> Result<Option<Vec<Vec<usize>>>> {
        self.check_shape(shape)?;
        Ok(Some((0..shape[0]).map(|c| vec![c]).collect()))
    }
}

/// The kit's default noise: zero-mean Gumbel of scale 1 (`G(t) = exp(-exp(-(t + c)))`, mean 0,
/// variance `pi^2 / 6`), sampled by inversion `-ln(-ln U) - c`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ZeroMeanGumbel;

impl NoiseModel for ZeroMeanGumbel {
    fn name(&self) -> &str {
        "zero-mean gumbel (kit)"
    }
    fn sample(&self, rng: &mut DlmRng, out: &mut [f64]) -> Result<()> {
        for o in out.iter_mut() {
            *o = -(-open01(rng).ln()).ln() - EULER_GAMMA;
        }
        Ok(())
    }
    fn mean(&self) -> f64 {
        0.0
    }
    fn variance(&self) -> f64 {
        std::f64::consts::PI.powi(2) / 6.0
    }
    fn cdf(&self, x: f64) -> Option<f64> {
        Some((-(-(x + EULER_GAMMA)).exp()).exp())
    }
}
