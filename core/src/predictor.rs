//! The perturb-and-MAP predictor `y* = argmax <mu + sigma * gamma, phi(y)>` and sampling.

use crate::error::{ensure_finite, DlmError, Result};
use crate::noise::NoiseModel;
use crate::rng::{rng_for, DlmRng, Stream};
use crate::structure::StructuredArgmax;
use ndarray::{ArrayViewD, IxDyn};
use rayon::prelude::*;
use std::collections::BTreeMap;

/// Reusable buffers of [`perturb_and_map`]: after a call, `gamma` holds the noise draw and
/// `pert` the perturbed potentials `theta + sigma * gamma`.
#[derive(Debug, Clone, Default)]
pub struct Scratch {
    /// The noise draw.
    pub gamma: Vec<f64>,
    /// The perturbed potentials.
    pub pert: Vec<f64>,
}

/// One perturb-and-MAP prediction: draws `gamma`, perturbs `theta` by `sigma * gamma` (both
/// kept in `scratch`), and writes the active set of the argmax into `out`.
pub fn perturb_and_map(
    structure: &dyn StructuredArgmax,
    noise: &dyn NoiseModel,
    theta: ArrayViewD<'_, f64>,
    sigma: f64,
    rng: &mut DlmRng,
    scratch: &mut Scratch,
    out: &mut Vec<usize>,
) -> Result<()> {
    let Scratch { gamma, pert } = scratch;
    if !(sigma.is_finite() && sigma >= 0.0) {
        return Err(DlmError::invalid(
            "sigma",
            format!("{sigma}: the noise scale must be finite and >= 0"),
        ));
    }
    let theta = theta.as_standard_layout();
    let t = theta.as_slice().expect("standard layout");
    gamma.resize(t.len(), 0.0);
    pert.resize(t.len(), 0.0);
    noise.sample(rng, gamma)?;
    for ((p, &x), &g) in pert.iter_mut().zip(t).zip(gamma.iter()) {
        *p = x + sigma * g;
    }
    let view = ArrayViewD::from_shape(IxDyn(theta.shape()), &pert[..]).expect("same shape");
    structure.argmax(view, out)
}

/// Empirical distribution of perturb-and-MAP solutions.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleSummary {
    /// Number of samples drawn.
    pub samples: usize,
    /// Each distinct solution (its active set) with its count, most frequent first
    /// (ties by active set).
    pub counts: Vec<(Vec<usize>, usize)>,
    /// Mean of `max_y <theta + sigma*gamma, phi(y)>` over the samples.
    pub mean_max: f64,
}

/// Draws `samples` perturb-and-MAP solutions (sample `s` uses the generator of
/// `(seed, s)`, so the result does not depend on the number of threads).
///
/// # Example
/// With zero-mean Gumbel noise on a multiclass argmax, the frequencies are
/// `softmax(theta / sigma)` (the Gumbel-max trick, theory.md §2).
/// ```
/// # use dlm_core::rng::{open01, DlmRng};
/// # use dlm_core::structure::checked_slice;
/// # use dlm_core::{Loss, NoiseModel, Result, StructuredArgmax, Target, EULER_GAMMA};
/// # use ndarray::{ArrayViewD, ArrayViewMutD};
/// # struct Best;
/// # impl StructuredArgmax for Best {
/// #     fn name(&self) -> &str { "best" }
/// #     fn check_shape(&self, s: &[usize]) -> Result<()> {
/// #         if s.len() == 1 { Ok(()) } else { Err(dlm_core::DlmError::shape("best", "[C]", s)) }
/// #     }
/// #     fn argmax(&self, theta: ArrayViewD<'_, f64>, out: &mut Vec<usize>) -> Result<()> {
/// #         let t = checked_slice(self, &theta)?;
/// #         out.clear();
/// #         out.push((1..t.len()).fold(0, |b, i| if t[i] > t[b] { i } else { b }));
/// #         Ok(())
/// #     }
/// # }
/// # struct ZeroMeanGumbel;
/// # impl NoiseModel for ZeroMeanGumbel {
/// #     fn name(&self) -> &str { "zm-gumbel" }
/// #     fn sample(&self, rng: &mut DlmRng, out: &mut [f64]) -> Result<()> {
/// #         for v in out { *v = -(-open01(rng).ln()).ln() - EULER_GAMMA; }
/// #         Ok(())
/// #     }
/// #     fn mean(&self) -> f64 { 0.0 }
/// #     fn variance(&self) -> f64 { std::f64::consts::PI.powi(2) / 6.0 }
/// # }
/// use ndarray::arr1;
///
/// let theta = arr1(&[1.0, 0.0, -1.0]).into_dyn();
/// let s = dlm_core::sample(&Best, &ZeroMeanGumbel, theta.view(), 1.0, 20_000, 3)?;
/// let z: f64 = [1.0f64, 0.0, -1.0].iter().map(|v| v.exp()).sum();
/// for (y, count) in &s.counts {
///     let p = theta[[y[0]]].exp() / z;
///     let freq = *count as f64 / 20_000.0;
///     assert!((freq - p).abs() < 5.0 * (p * (1.0 - p) / 20_000.0).sqrt());
/// }
/// # Ok::<(), dlm_core::DlmError>(())
/// ```
pub fn sample(
    structure: &dyn StructuredArgmax,
    noise: &dyn NoiseModel,
    theta: ArrayViewD<'_, f64>,
    sigma: f64,
    samples: usize,
    seed: u64,
) -> Result<SampleSummary> {
    if samples == 0 {
        return Err(DlmError::invalid("samples", "must be at least 1"));
    }
    structure.check_shape(theta.shape())?;
    let theta = theta.as_standard_layout();
    ensure_finite("potentials", theta.as_slice().expect("standard layout"))?;
    let results: Vec<(Vec<usize>, f64)> = (0..samples)
        .into_par_iter()
        .with_min_len(64)
        .map_init(
            Scratch::default,
            |scratch, s| -> Result<(Vec<usize>, f64)> {
                let mut rng = rng_for(seed, Stream::Other, &[s as u64]);
                let mut out = Vec::new();
                perturb_and_map(
                    structure,
                    noise,
                    theta.view(),
                    sigma,
                    &mut rng,
                    scratch,
                    &mut out,
                )?;
                let value = out.iter().map(|&i| scratch.pert[i]).sum();
                Ok((out, value))
            },
        )
        .collect::<Result<_>>()?;
    let mut map: BTreeMap<Vec<usize>, usize> = BTreeMap::new();
    let mut total = 0.0;
    for (sol, v) in results {
        total += v;
        *map.entry(sol).or_default() += 1;
    }
    let mut counts: Vec<(Vec<usize>, usize)> = map.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(SampleSummary {
        samples,
        counts,
        mean_max: total / samples as f64,
    })
}
