//! # dlm-plugin-noise
//!
//! Perturbation noise models for `dlm`:
//!
//! | name | distribution of one entry | mean | variance |
//! |---|---|---|---|
//! | `gumbel` (default) | zero-mean Gumbel, `G(t) = exp(-exp(-(t/b + c)))` | 0 | `b^2 pi^2 / 6` |
//! | `gumbel-standard` | standard Gumbel (location 0, scale `b`) | `b c` | `b^2 pi^2 / 6` |
//! | `gaussian` | `N(0, s^2)` | 0 | `s^2` |
//! | `logistic` | logistic, location 0, scale `s` | 0 | `s^2 pi^2 / 3` |
//! | `sum-of-gamma` | Niepert et al. 2021: `(tau/k) (sum_{i=1..n} Gamma(1/k, k/i) - ln n)` | `(tau/k)(H_n - ln n)` | `(tau^2/k) sum 1/i^2` |
//! | `corr-gaussian` | `N(0, s^2 C)` over the whole potentials array, `C` AR(1) (`rho^abs(i-j)`) or equicorrelated; `C = L L^T` by Cholesky (`ndarray-linalg`) | 0 | `s^2` |
//!
//! `c` is the Euler–Mascheroni constant. The Gumbel scale may be given as `scale=b` or as
//! `variance=v` (the official sorting code uses variance 3).

mod models;

pub use models::{CorrGaussian, Gaussian, Gumbel, Logistic, SumOfGamma};

use dlm_core::plugin::Registrar;
use dlm_core::Result;

/// Registers the noise models.
pub fn register(r: &mut Registrar<'_>) -> Result<()> {
    r.noise(
        "gumbel",
        "zero-mean Gumbel (mean 0, variance scale^2*pi^2/6); options scale=1 | variance=V",
        |c| Gumbel::from_config(c, true),
    )?;
    r.noise(
        "gumbel-standard",
        "standard Gumbel (location 0, mean scale*0.5772); option scale=1",
        |c| Gumbel::from_config(c, false),
    )?;
    r.noise(
        "gaussian",
        "N(0, std^2); option std=1",
        Gaussian::from_config,
    )?;
    r.noise(
        "logistic",
        "logistic, location 0 (variance scale^2*pi^2/3); option scale=1",
        Logistic::from_config,
    )?;
    r.noise(
        "sum-of-gamma",
        "Sum-of-Gamma for top-k (Niepert et al. 2021); options k=1, tau=1, terms=10",
        SumOfGamma::from_config,
    )?;
    r.noise(
        "corr-gaussian",
        "correlated Gaussian over the potentials array; options rho=0.5, kind=ar1|equi, std=1",
        CorrGaussian::from_config,
    )?;
    Ok(())
}

dlm_core::export_plugin!(register);
