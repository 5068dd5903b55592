//! An adaptive `eps` policy for DLM (`--eps-policy adaptive`), beside the seed's.
//!
//! The seed's policy ([`DlmEstimator`]) grows `|eps|` by 10 % while every direction of a batch
//! is zero and the loss is positive, up to a cap, and never shrinks it. When the scores grow
//! during training (an embedding whose distances grow), a fixed `|eps|` becomes small beside
//! them, almost every direction is zero and the estimator stops producing gradient, while the
//! cap stops the escape.
//!
//! [`AdaptiveDlm`] instead keeps `|eps|` **relative to the spread of the scores**: for each
//! batch `eps = sign * r * s`, where `s` is the mean over the examples of the standard
//! deviation of their potentials, so `eps` follows the scores whether distances are 0.01 or
//! 1000. After the batch, `r` is multiplied by `factor` when the batch's zero-direction rate is
//! above the band's top and divided by it when it is below the band's bottom. The rate is
//! taken over the draws of examples with loss left ([`zero_directions_with_loss`]): a correct
//! prediction has a zero direction for any `eps`, and counting it would push `|eps|` up without
//! end once most examples are right. There
//! is no within-batch escape and no cap other than keeping `r` in `[1e-9, 1e9]`.
//!
//! **What a changed `eps` does to the estimate.** DLM's direction
//! `(phi(y*(eps)) - phi(y*)) / eps` is a finite difference of the perturbed expected loss: it
//! is unbiased only as `eps -> 0`. A larger `|eps|` gives more nonzero directions (lower
//! variance, fewer wasted draws) but a larger finite-difference bias (the gradient of a
//! smoothed, loss-augmented objective rather than of the expected loss); a smaller `|eps|`
//! gives a smaller bias but more zero directions, i.e. a higher-variance estimate from fewer
//! informative draws, and none at all when every direction is zero. Holding the zero rate in
//! a band trades the two explicitly; the seed's cap does not bound the bias either (the cap is
//! absolute, the bias is relative to the scores' spread).
//!
//! State values (saved in checkpoints): `epsilon` (the `eps` of the last batch) and
//! `eps_relative` (`r`; absent before the first batch, when `r` is set so that the first batch
//! uses the configured `eps`).

use crate::error::{DlmError, Result};
use crate::estimator::{DlmEstimator, Workspace, EPSILON_STATE};
use crate::gradient::{Batch, Estimate, EstimatorState, GradientEstimator, NoiseKey};
use crate::loss::Loss;
use crate::noise::NoiseModel;
use crate::structure::StructuredArgmax;

/// The state value of the relative `eps` (`|eps| / spread of the scores`).
pub const RELATIVE_STATE: &str = "eps_relative";

/// DLM with the adaptive `eps` policy.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptiveDlm {
    /// Draws and the initial `eps` (its sign is kept; its size sets the first batch's `eps`);
    /// the escape settings are not used.
    pub dlm: DlmEstimator,
    /// Target band of the zero-direction rate, `0 <= lo < hi <= 1`.
    pub band: (f64, f64),
    /// Multiplicative step of `r` per batch outside the band (> 1).
    pub factor: f64,
}

impl AdaptiveDlm {
    /// The policy with the default step 1.25.
    pub fn new(dlm: DlmEstimator, band: (f64, f64)) -> Result<Self> {
        let a = AdaptiveDlm {
            dlm,
            band,
            factor: 1.25,
        };
        a.validate()?;
        Ok(a)
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        self.dlm.validate()?;
        let (lo, hi) = self.band;
        if !(lo.is_finite() && hi.is_finite() && 0.0 <= lo && lo < hi && hi <= 1.0) {
            return Err(DlmError::invalid(
                "eps band",
                format!("{lo},{hi}: need 0 <= LO < HI <= 1 (zero-direction rates)"),
            ));
        }
        if !(self.factor.is_finite() && self.factor > 1.0) {
            return Err(DlmError::invalid("eps factor", "must be finite and > 1"));
        }
        Ok(())
    }
}

/// The zero directions and the draws of the examples that have loss left (a positive mean
/// perturbed loss): an example whose every draw has loss 0 has a zero direction for any `eps`
/// (towards the truth), so its draws say nothing about `eps` and are left out. Returns
/// `(zero, draws)`.
pub fn zero_directions_with_loss(e: &Estimate) -> (usize, usize) {
    let b = e.loss.len();
    let d = &e.diagnostics;
    let per = d.total_draws.checked_div(b).unwrap_or(0);
    let done = e.loss.iter().filter(|&&l| l <= 0.0).count() * per;
    (
        d.zero_directions.saturating_sub(done),
        d.total_draws.saturating_sub(done),
    )
}

/// The spread of a batch's scores: the mean over the examples of the standard deviation of
/// their potentials (1 when that is 0 or not finite, e.g. all potentials equal).
pub fn score_spread(batch: &Batch<'_>) -> f64 {
    let shape = batch.theta.shape();
    let b = shape.first().copied().unwrap_or(0);
    if b == 0 {
        return 1.0;
    }
    let t = batch.theta.as_standard_layout();
    let v = t.as_slice().expect("standard layout");
    let m = v.len() / b;
    if m == 0 {
        return 1.0;
    }
    let mut total = 0.0;
    for row in v.chunks(m) {
        let mean = row.iter().sum::<f64>() / m as f64;
        let var = row.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / m as f64;
        total += var.sqrt();
    }
    let s = total / b as f64;
    if s.is_finite() && s > 0.0 {
        s
    } else {
        1.0
    }
}

/// The same estimator as [`DlmEstimator`] with another eps schedule: its name, flags and
/// initial state are the wrapped estimator's.
impl GradientEstimator for AdaptiveDlm {
    fn name(&self) -> &str {
        GradientEstimator::name(&self.dlm)
    }

    fn learns_sigma(&self) -> bool {
        GradientEstimator::learns_sigma(&self.dlm)
    }

    fn uses_noise(&self) -> bool {
        GradientEstimator::uses_noise(&self.dlm)
    }

    fn initial_state(&self) -> EstimatorState {
        GradientEstimator::initial_state(&self.dlm)
    }

    fn estimate(
        &self,
        state: &mut EstimatorState,
        structure: &dyn StructuredArgmax,
        noise: &dyn NoiseModel,
        loss: &dyn Loss,
        batch: &Batch<'_>,
        key: NoiseKey,
    ) -> Result<Estimate> {
        let spread = score_spread(batch);
        let r = state
            .get(RELATIVE_STATE)
            .unwrap_or(self.dlm.epsilon.abs() / spread)
            .clamp(1e-9, 1e9);
        let eps = self.dlm.epsilon.signum() * r * spread;
        let current = DlmEstimator {
            epsilon: eps,
            escape_factor: 1.0,
            max_abs_epsilon: f64::MAX,
            ..self.dlm.clone()
        };
        let e = current.estimate(
            state.scratch::<Workspace>(),
            structure,
            noise,
            loss,
            batch,
            key,
        )?;
        let (zero, draws) = zero_directions_with_loss(&e);
        let rate = zero as f64 / draws.max(1) as f64;
        let next = if draws == 0 {
            r
        } else if rate > self.band.1 {
            r * self.factor
        } else if rate < self.band.0 {
            r / self.factor
        } else {
            r
        };
        state.set(RELATIVE_STATE, next.clamp(1e-9, 1e9));
        state.set(EPSILON_STATE, eps);
        Ok(e)
    }
}
