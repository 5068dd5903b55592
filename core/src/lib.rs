//! # dlm-core
//!
//! The engine of `dlm`: learning randomly perturbed structured predictors with direct loss
//! minimization (Cohen Indelman & Hazan, ICML 2021).
//!
//! * [`StructuredArgmax`], [`NoiseModel`], [`Loss`], [`Scorer`]: the four traits a plugin
//!   implements (see [`plugin`] for how plugins are written and loaded).
//! * [`predictor`]: the perturb-and-MAP predictor `y* = argmax <mu + sigma*gamma, phi(y)>`.
//! * [`estimator`]: the DLM gradient estimator with learned noise scale (two solver calls per
//!   draw, zero-direction escape, counter-based seeding, parallel batches).
//! * [`rng`]: counter-based seeding, so results do not depend on the number of threads.
//! * [`abi_hash`]: the ABI fingerprint that decides whether a plugin library may be loaded.
//!
//! The sign convention of the whole crate is theory.md's: `y*(eps) = argmax <theta +
//! sigma*gamma, phi(y)> + eps * l(y_true, y)`, and `(phi(y*(eps)) - phi(y*)) / eps` estimates
//! `d E[l] / d theta`.

pub mod abi_hash;
pub mod config;
pub mod data;
pub mod error;
pub mod estimator;
pub mod loss;
pub mod model_file;
pub mod noise;
pub mod plugin;
pub mod predictor;
pub mod rng;
pub mod scorer;
pub mod structure;
pub mod tasks;
pub mod trainer;
pub mod verify;

pub use config::{Config, Spec};
pub use error::{ensure_finite, DlmError, Result};
pub use estimator::{Batch, DlmEstimate, DlmEstimator, NoiseKey};
pub use loss::{Loss, Target};
pub use noise::{NoiseModel, EULER_GAMMA};
pub use plugin::{Registrar, Registry};
pub use rng::DlmRng;
pub use scorer::Scorer;
pub use structure::StructuredArgmax;
