//! # dlm-plugin-estimators
//!
//! Gradient estimators ([`GradientEstimator`](dlm_core::GradientEstimator)) for learning
//! through any `dlm` structure, all with the same sign (the gradient of the loss to
//! **minimise** with respect to the potentials `theta`, maximisation convention `y =
//! argmax <theta, phi(y)>`), the same counter-based noise
//! ([`noise_rng`](dlm_core::rng::noise_rng)`(seed, epoch, example id, draw)`) and parallel
//! solves with a fixed-order reduction, so results do not depend on the number of threads:
//!
//! | name | method | gradient in `theta` (per example) | sigma gradient | options |
//! |---|---|---|---|---|
//! | `dlm` | direct loss minimization (Cohen Indelman & Hazan 2021; [`DlmEstimator`]) | `mean_d (phi(y*_d(eps)) - phi(y*_d)) / eps` | `mean_d <gamma_d, phi(y*_d(eps)) - phi(y*_d)> / eps` | `epsilon=-1`, `draws=5`, `escape=1.1`, `max_epsilon=1000` |
//! | `fy` | perturbed Fenchel-Young loss (Berthet et al. 2020; [`FenchelYoung`]) | `mean_d phi(y*_d) - phi(y_true)` | `mean_d <gamma_d, phi(y*_d)>` (pushes sigma down) | `draws=5` |
//! | `blackbox` | interpolation (Vlastelica et al. 2020; [`Blackbox`]) | `(phi(y) - phi(y_lambda)) / lambda`, `y_lambda = argmax <theta - lambda L, phi>` | none | `lambda=10` |
//! | `imle` | I-MLE (Niepert et al. 2021; [`Imle`]) | `mean_d (phi(z_d) - phi(z'_d)) / lambda`, `z'_d` on `theta - lambda L` with the same noise | none | `lambda=10`, `draws=1` |
//! | `spo+` | SPO+ (Elmachtoub & Grigas 2022; [`SpoPlus`]) | `2 (phi(w~) - phi(w*))`, `w* = argmax <-c, phi>`, `w~ = argmax <2 theta + c, phi>` | none | none |
//!
//! Here `y*_d = argmax <theta + sigma gamma_d, phi>`, `y*_d(eps)` adds `eps * loss`, `L` is
//! the loss's linear form (`l(y) = const + <L, phi(y)>`), and `c` is the true cost vector,
//! read from `Target.weights` (`spo+` only). `blackbox` and `imle` need a loss with a linear
//! form; `blackbox` and `spo+` use no noise. With a linear loss, `imle` is DLM at
//! `eps = -lambda` without the escape and `blackbox` is that at `sigma = 0`.
//!
//! Register with `registry.register_builtin("dlm-plugin-estimators",
//! dlm_plugin_estimators::register)`; create with `registry.estimator(&"fy:draws=10".parse()?)`:
//!
//! ```
//! use dlm_core::{Batch, NoiseKey, Registry, Target};
//! use dlm_plugin_argmax::{Argmax, ZeroOne};
//! use dlm_plugin_noise::Gumbel;
//! use ndarray::{arr1, arr2};
//!
//! let mut reg = Registry::new();
//! reg.register_builtin("dlm-plugin-estimators", dlm_plugin_estimators::register)?;
//! let est = reg.estimator(&"blackbox:lambda=2".parse()?)?;
//! // Prefers class 1, the truth is 0; the 0/1 loss has L = -e_0, so
//! // y_lambda = argmax (theta + 2 e_0) = 0 and grad = (e_1 - e_0) / 2.
//! let theta = arr2(&[[0.3, 1.0, -0.2]]).into_dyn();
//! let sigma = arr1(&[0.0]);
//! let targets = [Target { truth: vec![0], weights: vec![] }];
//! let batch = Batch { theta: theta.view(), sigma: sigma.view(), targets: &targets, example_ids: &[0] };
//! let mut state = est.initial_state();
//! let e = est.estimate(&mut state, &Argmax, &Gumbel::new(1.0, true), &ZeroOne, &batch,
//!                      NoiseKey { seed: 1, epoch: 0 })?;
//! assert_eq!(e.grad_theta.as_slice().unwrap(), &[-0.5, 0.5, 0.0]);
//! assert!(!est.learns_sigma() && !est.uses_noise());
//! # Ok::<(), dlm_core::DlmError>(())
//! ```

mod blackbox;
mod common;
mod fy;
mod imle;
mod spo;

pub use blackbox::Blackbox;
pub use dlm_core::DlmEstimator;
pub use fy::FenchelYoung;
pub use imle::Imle;
pub use spo::SpoPlus;

use dlm_core::plugin::Registrar;
use dlm_core::{Config, Result};

/// `dlm` from its options `epsilon=-1`, `draws=5`, `escape=1.1` (the factor applied to `|eps|`
/// while every direction is zero; 1 disables the escape), `max_epsilon=1000` (largest
/// `|eps|`), validated.
pub fn dlm_from_config(c: &Config) -> Result<DlmEstimator> {
    let d = DlmEstimator::default();
    let e = DlmEstimator {
        epsilon: c.f64("epsilon", d.epsilon)?,
        draws: c.usize("draws", d.draws)?,
        escape_factor: c.f64("escape", d.escape_factor)?,
        max_abs_epsilon: c.f64("max_epsilon", d.max_abs_epsilon)?,
    };
    e.validate()?;
    Ok(e)
}

/// Registers the estimators `dlm`, `fy`, `blackbox`, `imle` and `spo+`.
pub fn register(r: &mut Registrar<'_>) -> Result<()> {
    r.estimator(
        "dlm",
        "direct loss minimization, learns sigma; options epsilon=-1, draws=5, escape=1.1, max_epsilon=1000",
        dlm_from_config,
    )?;
    r.estimator(
        "fy",
        "perturbed Fenchel-Young loss (Berthet et al. 2020), any noise; sigma gradient pushes sigma down; option draws=5",
        FenchelYoung::from_config,
    )?;
    r.estimator(
        "blackbox",
        "blackbox interpolation (Vlastelica et al. 2020), no noise, linear losses; option lambda=10",
        Blackbox::from_config,
    )?;
    r.estimator(
        "imle",
        "I-MLE (Niepert et al. 2021), use with sum-of-gamma noise, linear losses; options lambda=10, draws=1",
        Imle::from_config,
    )?;
    r.estimator(
        "spo+",
        "SPO+ (Elmachtoub & Grigas), true costs in Target.weights, no noise; no options",
        SpoPlus::from_config,
    )?;
    Ok(())
}

dlm_core::export_plugin!(register);
