//! Noise models for the perturbation `gamma`.

use crate::error::Result;
use crate::rng::DlmRng;

/// Euler–Mascheroni constant `c`: the mean of a standard Gumbel variable.
pub const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// A distribution for the perturbation `gamma` (one variable per part of the structure).
///
/// Samples are drawn from a [`DlmRng`] that the engine seeds per (epoch, example, draw), so a
/// model must draw all its randomness from that generator.
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
