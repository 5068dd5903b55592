//! What the estimators share: option checks, linear forms, the truth's indicator, the
//! batch's flat potentials, the per-(example, draw) parallel solve with its noise draw, and
//! the fixed-order reduction.

use dlm_core::gradient::{Batch, NoiseKey};
use dlm_core::loss::{Loss, Target};
use dlm_core::rng::noise_rng;
use dlm_core::{Config, DlmError, NoiseModel, Result, StructuredArgmax};
use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, CowArray, IxDyn};
use rayon::prelude::*;

/// `lambda` must be finite and positive.
pub(crate) fn check_lambda(estimator: &str, lambda: f64) -> Result<()> {
    if lambda.is_finite() && lambda > 0.0 {
        Ok(())
    } else {
        Err(DlmError::invalid(
            format!("{estimator}:lambda"),
            format!(
                "{lambda} is not allowed: lambda must be finite and > 0 (the size of the step \
                 towards lower loss; typical values 1 to 100)"
            ),
        ))
    }
}

/// `draws` must be at least 1.
pub(crate) fn check_draws(estimator: &str, draws: usize) -> Result<()> {
    if draws >= 1 {
        Ok(())
    } else {
        Err(DlmError::invalid(
            format!("{estimator}:draws"),
            "must be at least 1 (noise draws per example)",
        ))
    }
}

/// Reads `lambda` (finite, > 0) from a config.
pub(crate) fn lambda_option(c: &Config, estimator: &str, default: f64) -> Result<f64> {
    let lambda = c.f64("lambda", default)?;
    check_lambda(estimator, lambda)?;
    Ok(lambda)
}

/// Reads `draws` (>= 1) from a config.
pub(crate) fn draws_option(c: &Config, estimator: &str, default: usize) -> Result<usize> {
    let draws = c.usize("draws", default)?;
    check_draws(estimator, draws)?;
    Ok(draws)
}

/// The linear forms `L(t_b)` of every example, `lin[b * m..(b + 1) * m]`; an error naming the
/// estimator when the loss has none for some example (the estimator needs `dL/dphi`).
pub(crate) fn linear_forms(
    estimator: &str,
    loss: &dyn Loss,
    targets: &[Target],
    inner: &[usize],
    lin: &mut Vec<f64>,
) -> Result<()> {
    let m: usize = inner.iter().product();
    lin.clear();
    lin.resize(targets.len() * m, 0.0);
    for (b, t) in targets.iter().enumerate() {
        let out = ArrayViewMutD::from_shape(IxDyn(inner), &mut lin[b * m..(b + 1) * m])
            .expect("shape matches");
        if loss.linear_form(t, out)?.is_none() {
            return Err(DlmError::Unsupported {
                component: format!("estimator '{estimator}'"),
                what: format!(
                    "loss '{}', which has no linear form (for example {b})",
                    loss.name()
                ),
                hint: "it needs the loss's gradient dL/dphi: use a loss that is linear in the \
                       structure indicator (e.g. hamming), or the dlm estimator, which also \
                       works through the structure's loss-augmented argmax"
                    .into(),
            });
        }
    }
    dlm_core::ensure_finite("loss linear form", lin)
}

/// Checks that every example's `truth` is a non-empty active set of indices below `m`.
pub(crate) fn check_truths(estimator: &str, targets: &[Target], m: usize) -> Result<()> {
    for (b, t) in targets.iter().enumerate() {
        if t.truth.is_empty() {
            return Err(DlmError::invalid(
                format!("target of example {b}"),
                format!(
                    "the truth is empty, but estimator '{estimator}' needs phi(y_true): give the \
                     active set of the true structure"
                ),
            ));
        }
        if let Some(&i) = t.truth.iter().find(|&&i| i >= m) {
            return Err(DlmError::invalid(
                format!("target of example {b}"),
                format!("truth index {i} is outside potentials of {m} entries"),
            ));
        }
    }
    Ok(())
}

/// A checked batch with its potentials in standard layout: what every estimator reads first.
pub(crate) struct Flat<'a, 'b> {
    /// The batch.
    pub batch: &'a Batch<'b>,
    /// The shape of one example's potentials (`theta`'s shape without the batch axis).
    pub inner: Vec<usize>,
    /// Parts per example (the product of `inner`).
    pub m: usize,
    /// Examples in the batch.
    pub b_count: usize,
    theta: CowArray<'a, f64, IxDyn>,
}

impl<'a, 'b> Flat<'a, 'b> {
    /// Checks `batch` against `structure` ([`Batch::check`]).
    pub(crate) fn new(batch: &'a Batch<'b>, structure: &dyn StructuredArgmax) -> Result<Self> {
        let inner = batch.check(structure)?;
        Ok(Flat {
            batch,
            m: inner.iter().product(),
            inner,
            b_count: batch.targets.len(),
            theta: batch.theta.as_standard_layout(),
        })
    }

    /// Example `b`'s part of a flat per-example vector, `v[b * m..(b + 1) * m]`.
    pub(crate) fn row<'v>(&self, v: &'v [f64], b: usize) -> &'v [f64] {
        &v[b * self.m..(b + 1) * self.m]
    }

    /// Example `b`'s potentials.
    pub(crate) fn theta(&self, b: usize) -> &[f64] {
        self.row(self.theta.as_slice().expect("standard layout"), b)
    }

    /// `v` (one example's `m` entries) with the shape of one example's potentials.
    pub(crate) fn view<'v>(&self, v: &'v [f64]) -> ArrayViewD<'v, f64> {
        ArrayViewD::from_shape(IxDyn(&self.inner), v).expect("shape")
    }

    /// The fixed-order reduction of per-(example, draw) results, `draws` consecutive slots
    /// per example: calls `add(b, slot, g_b)` for the slots in index order, with `g_b` example
    /// `b`'s part of the gradient in theta; returns that gradient (zeros before the first
    /// call, shape `[B, inner...]`).
    pub(crate) fn reduce<T>(
        &self,
        slots: &[T],
        draws: usize,
        mut add: impl FnMut(usize, &T, &mut [f64]),
    ) -> ArrayD<f64> {
        let m = self.m;
        let mut full_shape = vec![self.b_count];
        full_shape.extend_from_slice(&self.inner);
        let mut grad_theta = ArrayD::<f64>::zeros(IxDyn(&full_shape));
        let gt = grad_theta
            .as_slice_mut()
            .expect("fresh array is contiguous");
        for (k, slot) in slots.iter().enumerate() {
            let b = k / draws;
            add(b, slot, &mut gt[b * m..(b + 1) * m]);
        }
        grad_theta
    }
}

/// Solves `n` independent pieces in parallel, `solve(k, &mut slots[k])` (at least `min_len`
/// pieces per rayon task), and returns `slots[..n]` for a reduction in index order
/// ([`Flat::reduce`]): each slot is written by its own index only, so the results do not
/// depend on the number of threads. `slots` grows to `n` and keeps its buffers between calls.
pub(crate) fn solve_each<T, F>(
    slots: &mut Vec<T>,
    n: usize,
    min_len: usize,
    solve: F,
) -> Result<&[T]>
where
    T: Default + Send,
    F: Fn(usize, &mut T) -> Result<()> + Sync + Send,
{
    if slots.len() < n {
        slots.resize_with(n, T::default);
    }
    let slots = &mut slots[..n];
    slots
        .par_iter_mut()
        .enumerate()
        .with_min_len(min_len)
        .try_for_each(|(k, slot)| solve(k, slot))?;
    Ok(slots)
}

/// One noise draw and the potentials it perturbs.
#[derive(Debug, Default, Clone)]
pub(crate) struct Draw {
    /// The noise `gamma`.
    pub gamma: Vec<f64>,
    /// `theta_b + sigma_b gamma`.
    pub pert: Vec<f64>,
}

impl Draw {
    /// Draw `d` of example `b`: `gamma` from `noise` with the counter-based stream
    /// `noise_rng(seed, epoch, example id, d)`, and `pert = theta_b + sigma_b gamma`.
    pub(crate) fn sample(
        &mut self,
        flat: &Flat<'_, '_>,
        noise: &dyn NoiseModel,
        key: NoiseKey,
        b: usize,
        d: usize,
    ) -> Result<()> {
        self.gamma.resize(flat.m, 0.0);
        self.pert.resize(flat.m, 0.0);
        let mut rng = noise_rng(key.seed, key.epoch, flat.batch.example_ids[b], d as u64);
        noise.sample(&mut rng, &mut self.gamma)?;
        let s = flat.batch.sigma[b];
        for ((q, &t), &g) in self.pert.iter_mut().zip(flat.theta(b)).zip(&self.gamma) {
            *q = t + s * g;
        }
        Ok(())
    }
}

/// `g += w (phi(a) - phi(b))`, adding at the parts of `a` first, then subtracting at those of
/// `b`; false (and nothing added) when `a == b`, a zero direction.
pub(crate) fn add_difference(g: &mut [f64], a: &[usize], b: &[usize], w: f64) -> bool {
    if a == b {
        return false;
    }
    for &i in a {
        g[i] += w;
    }
    for &i in b {
        g[i] -= w;
    }
    true
}
