//! Settings of the kit.

use dlm_core::error::{DlmError, Result};
use dlm_core::loss::Target;
use dlm_core::rng::DlmRng;
use std::fmt;
use std::sync::Arc;

/// Builds a [`Target`] for a loss with special needs: called with the potentials shape, the
/// active set of a feasible solution chosen as the truth, and a generator for any random
/// weights.
pub type TargetFn = dyn Fn(&[usize], &[usize], &mut DlmRng) -> Target + Send + Sync;

/// Settings shared by every check of the kit. [`KitOptions::default`] is sized for a plugin's
/// `cargo test` in a debug build (well under 10 s for one structure with its loss).
#[derive(Clone)]
pub struct KitOptions {
    /// Seed of every random draw (potentials, targets, noise). Equal seeds give equal reports.
    pub seed: u64,
    /// Potentials shapes for the conformance and loss checks. `None` (default): probe small
    /// candidates with `check_shape` (rank 1: `[1]..[6]`; rank 2: `[1..4] x [1..4]`; rank 3:
    /// `[1..2]^3`) and keep up to [`max_shapes`](KitOptions::max_shapes) accepted ones,
    /// preferring those whose `enumerate` lists the solutions.
    pub shapes: Option<Vec<Vec<usize>>>,
    /// How many probed shapes to keep (the smallest and the largest ones).
    pub max_shapes: usize,
    /// Random continuous potentials per shape (the tied, all-equal and large-magnitude kinds
    /// get fewer).
    pub cases: usize,
    /// Noise draws of each statistical check (identities, DLM gradient); tolerances shrink
    /// like `1 / sqrt(samples)`.
    pub samples: usize,
    /// Tolerance of the statistical checks in standard errors.
    pub z: f64,
    /// Noise scale `sigma` of the identities and of the gradient check.
    pub sigma: f64,
    /// `|eps|` of the DLM gradient check (both signs are checked).
    pub epsilon: f64,
    /// Step of the finite differences of the Monte Carlo gradient check.
    pub fd_step: f64,
    /// Classes of the argmax problem of the Gumbel-max identities.
    pub classes: usize,
    /// Builds the loss targets; `None`: the truth is a random feasible solution and the
    /// weights are random, of length `prod(shape)`, or `shape[0]` if the loss refuses that,
    /// or none.
    pub target: Option<Arc<TargetFn>>,
}

impl Default for KitOptions {
    fn default() -> Self {
        KitOptions {
            seed: 0,
            shapes: None,
            max_shapes: 4,
            cases: 16,
            samples: 20_000,
            z: 5.0,
            sigma: 0.7,
            epsilon: 0.1,
            fd_step: 0.02,
            classes: 5,
            target: None,
        }
    }
}

impl fmt::Debug for KitOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KitOptions")
            .field("seed", &self.seed)
            .field("shapes", &self.shapes)
            .field("max_shapes", &self.max_shapes)
            .field("cases", &self.cases)
            .field("samples", &self.samples)
            .field("z", &self.z)
            .field("sigma", &self.sigma)
            .field("epsilon", &self.epsilon)
            .field("fd_step", &self.fd_step)
            .field("classes", &self.classes)
            .field("target", &self.target.as_ref().map(|_| "<fn>"))
            .finish()
    }
}

impl KitOptions {
    /// The given shapes instead of probing.
    pub fn with_shapes(mut self, shapes: Vec<Vec<usize>>) -> Self {
        self.shapes = Some(shapes);
        self
    }

    /// A target builder for a loss whose weights the default cannot guess.
    pub fn with_target(
        mut self,
        f: impl Fn(&[usize], &[usize], &mut DlmRng) -> Target + Send + Sync + 'static,
    ) -> Self {
        self.target = Some(Arc::new(f));
        self
    }

    /// Refuses settings under which the checks mean nothing (a non-positive `sigma` or `z`,
    /// fewer than 100 samples, ...).
    pub fn validate(&self) -> Result<()> {
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(DlmError::invalid(
                    format!("kit option {name}"),
                    format!("{v} is not allowed: it must be finite and positive"),
                ))
            }
        };
        positive("sigma", self.sigma)?;
        positive("z", self.z)?;
        positive("epsilon", self.epsilon)?;
        positive("fd_step", self.fd_step)?;
        if self.samples < 100 {
            return Err(DlmError::invalid(
                "kit option samples",
                format!(
                    "{} is too few for a statistical check; use at least 100",
                    self.samples
                ),
            ));
        }
        if self.classes < 2 {
            return Err(DlmError::invalid(
                "kit option classes",
                "the identities need at least 2 classes",
            ));
        }
        if self.cases == 0 || self.max_shapes == 0 {
            return Err(DlmError::invalid(
                "kit option cases / max_shapes",
                "must be at least 1",
            ));
        }
        if let Some(shapes) = &self.shapes {
            if shapes.is_empty() {
                return Err(DlmError::invalid(
                    "kit option shapes",
                    "give at least one shape, or None to probe",
                ));
            }
        }
        Ok(())
    }
}
