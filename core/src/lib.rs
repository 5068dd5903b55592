//! # dlm-core
//!
//! The engine of `dlm`: learning randomly perturbed structured predictors with direct loss
//! minimization (Cohen Indelman & Hazan, ICML 2021).
//!
//! * [`StructuredArgmax`], [`NoiseModel`], [`Loss`], [`Scorer`], [`GradientEstimator`]: the
//!   five traits a plugin implements (see [`plugin`] for how plugins are written and loaded).
//! * [`predictor`]: the perturb-and-MAP predictor `y* = argmax <mu + sigma*gamma, phi(y)>`.
//! * [`gradient`]: the estimator interface ([`GradientEstimator`], [`Batch`], [`Estimate`],
//!   [`EstimatorState`]).
//! * [`estimator`]: the DLM gradient estimator with learned noise scale (two solver calls per
//!   draw, zero-direction escape, counter-based seeding, parallel batches).
//! * [`limits`]: sizes from file headers and flags checked before they size an allocation.
//! * [`rng`]: counter-based seeding, so results do not depend on the number of threads.
//! * [`abi_hash`]: the ABI fingerprint that decides whether a plugin library may be loaded.
//!
//! The sign convention of the whole crate is theory.md's: `y*(eps) = argmax <theta +
//! sigma*gamma, phi(y)> + eps * l(y_true, y)`, and `(phi(y*(eps)) - phi(y*)) / eps` estimates
//! `d E[l] / d theta`.

pub mod abi_hash;
pub mod adaptive;
pub mod config;
pub mod error;
pub mod estimator;
pub mod gradient;
pub mod limits;
pub mod linalg;
pub mod loss;
pub mod noise;
pub mod plugin;
pub mod predictor;
pub mod profile;
pub mod rng;
pub mod scorer;
pub mod structure;

/// The `ndarray` this crate was built with: its array views cross the plugin boundary, so a
/// plugin that uses `dlm_core::ndarray` instead of its own `ndarray` dependency can never
/// disagree with the host about their layout.
pub use ndarray;

pub use config::{Config, Spec};
pub use error::{ensure_finite, DlmError, Result};
pub use estimator::{DlmEstimate, DlmEstimator, Workspace};
pub use gradient::{Batch, Diagnostics, Estimate, EstimatorState, GradientEstimator, NoiseKey};
pub use loss::{Loss, Target};
pub use noise::{NoiseModel, EULER_GAMMA};
pub use plugin::{Kind, Registrar, Registry};
pub use predictor::{
    perturb, perturb_and_map, sample, sample_with, SampleOptions, SampleSummary, Scratch,
};
pub use rng::DlmRng;
pub use scorer::Scorer;
pub use structure::{score, write_phi, StructuredArgmax};
