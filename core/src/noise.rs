//! Noise models for the perturbation `gamma`.

use crate::error::Result;
use crate::rng::DlmRng;

/// Euler–Mascheroni constant `c`: the mean of a standard Gumbel variable.
pub const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// A distribution for the perturbation `gamma` (one variable per part of the structure).
///
/// Samples are drawn from a [`DlmRng`] that the engine seeds per (epoch, example, draw), so a
/// model must draw all its randomness from that generator.
///
/// # Example
/// Zero-mean Gumbel noise by inversion (the built-in `gumbel` in `dlm-plugin-noise` is faster):
/// ```
/// use dlm_core::rng::{open01, rng_for, DlmRng, Stream};
/// use dlm_core::{NoiseModel, Result, EULER_GAMMA};
///
/// struct ZeroMeanGumbel;
/// impl NoiseModel for ZeroMeanGumbel {
///     fn name(&self) -> &str { "zm-gumbel" }
///     fn sample(&self, rng: &mut DlmRng, out: &mut [f64]) -> Result<()> {
///         for v in out { *v = -(-open01(rng).ln()).ln() - EULER_GAMMA; }
///         Ok(())
///     }
///     fn mean(&self) -> f64 { 0.0 }
///     fn variance(&self) -> f64 { std::f64::consts::PI.powi(2) / 6.0 }
///     fn cdf(&self, x: f64) -> Option<f64> { Some((-(-(x + EULER_GAMMA)).exp()).exp()) }
/// }
///
/// let mut g = vec![0.0; 100_000];
/// ZeroMeanGumbel.sample(&mut rng_for(1, Stream::Other, &[0]), &mut g)?;
/// let mean = g.iter().sum::<f64>() / g.len() as f64;
/// assert!(mean.abs() < 5.0 * (ZeroMeanGumbel.variance() / g.len() as f64).sqrt());
/// # Ok::<(), dlm_core::DlmError>(())
/// ```
pub trait NoiseModel: Send + Sync {
    /// The registered name (e.g. `gumbel`).
    fn name(&self) -> &str;

    /// Fills `out` with one draw of the perturbation for a potentials array of `out.len()`
    /// entries (i.i.d. for most models; correlated models couple the entries).
    fn sample(&self, rng: &mut DlmRng, out: &mut [f64]) -> Result<()>;

    /// The mean of one entry.
    fn mean(&self) -> f64;

    /// The variance of one entry.
    fn variance(&self) -> f64;

    /// The marginal CDF of one entry at `x`, where it has a closed form.
    fn cdf(&self, x: f64) -> Option<f64> {
        let _ = x;
        None
    }
}
