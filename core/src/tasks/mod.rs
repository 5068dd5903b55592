//! Experiments built on the engine: each task generates or loads data, maps it to potentials
//! with its scorers, and trains with the [DLM estimator](crate::estimator).

pub mod knn;
pub mod sort;

use crate::error::{DlmError, Result};
use crate::estimator::{Batch, DlmEstimate, DlmEstimator, NoiseKey, Workspace};
use crate::loss::{Loss, Target};
use crate::model_file::ModelFile;
use crate::noise::NoiseModel;
use crate::scorer::Scorer;
use crate::structure::StructuredArgmax;
use ndarray::{Array1, ArrayView1, ArrayViewD};
use std::fmt;
use std::path::Path;

/// What every task trains: the structure, noise and loss, the `mu` and `sigma` scorers, and the
/// estimator with its current `eps` (which the zero-direction escape grows across batches).
pub struct PerturbedModel {
    /// The solver.
    pub structure: Box<dyn StructuredArgmax>,
    /// The perturbation.
    pub noise: Box<dyn NoiseModel>,
    /// The task loss.
    pub loss: Box<dyn Loss>,
    /// The potentials network `mu_u`.
    pub mu: Box<dyn Scorer>,
    /// The noise scale `sigma_v`.
    pub sigma: SigmaModel,
    estimator: DlmEstimator,
    ws: Workspace,
}

impl fmt::Debug for PerturbedModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerturbedModel")
            .field("structure", &self.structure.name())
            .field("noise", &self.noise.name())
            .field("loss", &self.loss.name())
            .field("mu", &self.mu.name())
            .field("sigma", &self.sigma)
            .field("estimator", &self.estimator)
            .finish()
    }
}

impl PerturbedModel {
    /// Assembles a model; the estimator's `epsilon` is the initial `eps`.
    pub fn new(
        structure: Box<dyn StructuredArgmax>,
        noise: Box<dyn NoiseModel>,
        loss: Box<dyn Loss>,
        mu: Box<dyn Scorer>,
        sigma: SigmaModel,
        estimator: DlmEstimator,
    ) -> Result<Self> {
        estimator.validate()?;
        Ok(PerturbedModel {
            structure,
            noise,
            loss,
            mu,
            sigma,
            estimator,
            ws: Workspace::new(),
        })
    }

    /// The current `eps`.
    pub fn epsilon(&self) -> f64 {
        self.estimator.epsilon
    }

    /// Sets the current `eps` (e.g. when resuming a saved model).
    pub fn set_epsilon(&mut self, eps: f64) {
        self.estimator.epsilon = eps;
    }

    /// The estimator settings (with the current `eps`).
    pub fn estimator(&self) -> &DlmEstimator {
        &self.estimator
    }

    /// Checks that a learned sigma maps inputs of `input_shape` (`[B, ...]`) to `[B, 1]`.
    pub fn check_sigma_shape(&self, input_shape: &[usize]) -> Result<()> {
        if let SigmaModel::Learned(s) = &self.sigma {
            let out = s.output_shape(input_shape)?;
            if out != [input_shape[0], 1] {
                return Err(DlmError::invalid(
                    "sigma scorer",
                    format!(
                        "maps {input_shape:?} to {out:?}, but it must give one value per example, [B, 1] (e.g. out=softplus with a last layer of width 1)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The noise scale of each of the `b` examples in `x`.
    pub fn sigmas(&mut self, x: ArrayViewD<'_, f64>, train: bool) -> Result<Array1<f64>> {
        let b = x.shape().first().copied().unwrap_or(0);
        match &mut self.sigma {
            SigmaModel::Fixed(v) => Ok(Array1::from_elem(b, *v)),
            SigmaModel::None => Ok(Array1::zeros(b)),
            SigmaModel::Learned(s) => s
                .forward(x, train)?
                .into_shape_with_order(b)
                .map_err(|_| DlmError::invalid("sigma scorer", "must return [B, 1]")),
        }
    }

    /// The DLM estimate for a batch; the `eps` it ends with becomes the current one.
    pub fn estimate(
        &mut self,
        theta: ArrayViewD<'_, f64>,
        sigma: ArrayView1<'_, f64>,
        targets: &[Target],
        example_ids: &[u64],
        key: NoiseKey,
    ) -> Result<DlmEstimate> {
        let e = self.estimator.estimate(
            &mut self.ws,
            self.structure.as_ref(),
            self.noise.as_ref(),
            self.loss.as_ref(),
            &Batch {
                theta,
                sigma,
                targets,
                example_ids,
            },
            key,
        )?;
        self.estimator.epsilon = e.diagnostics.epsilon;
        Ok(e)
    }

    /// Back-propagates `scale * grad_sigma` into a learned sigma and steps its optimizer.
    pub fn step_sigma(&mut self, grad_sigma: &Array1<f64>, scale: f64) -> Result<()> {
        if let SigmaModel::Learned(s) = &mut self.sigma {
            let b = grad_sigma.len();
            let g = (grad_sigma * scale)
                .into_shape_with_order((b, 1))
                .expect("b elements");
            s.backward(g.into_dyn().view())?;
            s.step()?;
        }
        Ok(())
    }

    /// Writes the weights (`mu`, and `sigma` when learned) and the current `eps` into `m`.
    pub fn save_into(&self, m: &mut ModelFile) -> Result<()> {
        m.header
            .insert("epsilon".into(), self.epsilon().to_string());
        let mut mu = Vec::new();
        self.mu.save(&mut mu)?;
        m.sections.push(("mu".into(), mu));
        if let SigmaModel::Learned(s) = &self.sigma {
            let mut b = Vec::new();
            s.save(&mut b)?;
            m.sections.push(("sigma".into(), b));
        }
        Ok(())
    }

    /// Reads what [`save_into`](PerturbedModel::save_into) wrote (from the file at `path`).
    pub fn load_from(&mut self, m: &ModelFile, path: &Path) -> Result<()> {
        self.mu.load(&mut m.section("mu", path)?)?;
        if let SigmaModel::Learned(s) = &mut self.sigma {
            s.load(&mut m.section("sigma", path)?)?;
        }
        if let Ok(e) = m.get("epsilon", path)?.parse::<f64>() {
            self.set_epsilon(e);
        }
        Ok(())
    }
}

/// How the noise scale `sigma(x)` is obtained.
pub enum SigmaModel {
    /// A learned scorer `sigma_v(x)` (its output must be positive, e.g. softplus).
    Learned(Box<dyn Scorer>),
    /// The same fixed value for every example.
    Fixed(f64),
    /// No noise (`sigma = 0`): plain direct loss minimization of the MAP predictor.
    None,
}

impl fmt::Debug for SigmaModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SigmaModel::Learned(s) => write!(f, "Learned({})", s.name()),
            SigmaModel::Fixed(v) => write!(f, "Fixed({v})"),
            SigmaModel::None => write!(f, "None"),
        }
    }
}

/// The `--sigma` option: `learned`, `fixed:VALUE` or `none`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SigmaMode {
    /// A learned network.
    Learned,
    /// A fixed value.
    Fixed(f64),
    /// No noise.
    None,
}

impl std::str::FromStr for SigmaMode {
    type Err = DlmError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            DlmError::invalid(
                "--sigma",
                format!("'{s}': write learned, fixed:VALUE (VALUE > 0) or none"),
            )
        };
        match s {
            "learned" => Ok(SigmaMode::Learned),
            "none" => Ok(SigmaMode::None),
            _ => {
                let v: f64 = s
                    .strip_prefix("fixed:")
                    .ok_or_else(bad)?
                    .parse()
                    .map_err(|_| bad())?;
                if v > 0.0 && v.is_finite() {
                    Ok(SigmaMode::Fixed(v))
                } else {
                    Err(bad())
                }
            }
        }
    }
}

impl fmt::Display for SigmaMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SigmaMode::Learned => f.write_str("learned"),
            SigmaMode::Fixed(v) => write!(f, "fixed:{v}"),
            SigmaMode::None => f.write_str("none"),
        }
    }
}
