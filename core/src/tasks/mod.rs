//! Experiments built on the engine: each task generates or loads data, maps it to potentials
//! with its scorers, and trains with the [DLM estimator](crate::estimator).

pub mod knn;
pub mod sort;

use crate::error::{DlmError, Result};
use crate::scorer::Scorer;
use std::fmt;

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
