//! The one error type of the engine.
//!
//! Every fallible function in `dlm-core` and in the plugins returns [`DlmError`]; each message
//! says what was wrong and, where there is one, how to fix it.

use std::path::PathBuf;

/// Result alias used throughout the engine.
pub type Result<T, E = DlmError> = std::result::Result<T, E>;

/// Everything that can go wrong in `dlm`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DlmError {
    /// An array had the wrong shape.
    #[error("shape mismatch for {what}: expected {expected}, got {got:?}")]
    ShapeMismatch {
        /// Which array.
        what: String,
        /// The expected shape, in words (e.g. "[n, n] with n >= 1").
        expected: String,
        /// The shape that was passed.
        got: Vec<usize>,
    },
    /// An input contained NaN or an infinite value.
    #[error("{what} contains a non-finite value ({value}) at flat index {index}; remove NaN/inf from the input (check the network output or the data file)")]
    NonFinite {
        /// Which array.
        what: String,
        /// Flat (row-major) index of the first offending entry.
        index: usize,
        /// The value found.
        value: f64,
    },
    /// A hyper-parameter or option had an invalid value.
    #[error("invalid value for {name}: {message}")]
    InvalidParameter {
        /// The parameter (option name or config key).
        name: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// Empty input where at least one element is needed.
    #[error("{what} is empty: {hint}")]
    Empty {
        /// Which input.
        what: String,
        /// How to fix it.
        hint: String,
    },
    /// A name that no plugin registered.
    #[error("no {kind} named '{name}' is registered (available: {available}); load the plugin library that provides it")]
    UnknownComponent {
        /// structure, noise, loss, scorer or estimator.
        kind: &'static str,
        /// The requested name.
        name: String,
        /// Comma-separated list of the registered names.
        available: String,
    },
    /// Two plugins registered the same name.
    #[error("{kind} '{name}' is registered twice (first from {first}, again from {second}); remove one of the plugins")]
    DuplicateComponent {
        /// structure, noise, loss, scorer or estimator.
        kind: &'static str,
        /// The name.
        name: String,
        /// Origin of the first registration.
        first: String,
        /// Origin of the second registration.
        second: String,
    },
    /// The loss has no linear form and the solver cannot maximise it directly.
    #[error("loss '{loss}' is not linear in the structure indicator and structure '{structure}' has no loss-augmented solver for it; use a decomposable loss (e.g. hamming) or a structure plugin that implements argmax_loss_augmented")]
    NonDecomposableLoss {
        /// The loss name.
        loss: String,
        /// The structure name.
        structure: String,
    },
    /// A plugin library could not be loaded or is incompatible.
    #[error("plugin {path}: {message}")]
    Plugin {
        /// The library path.
        path: PathBuf,
        /// What went wrong and how to fix it.
        message: String,
    },
    /// Plugin code panicked; the panic was caught and turned into this error.
    #[error("plugin code panicked in {context}: {message}")]
    PluginPanic {
        /// Which call panicked (e.g. "structure 'matching' argmax").
        context: String,
        /// The panic message.
        message: String,
    },
    /// A capability the component does not provide.
    #[error("{component} does not support {what}: {hint}")]
    Unsupported {
        /// The component.
        component: String,
        /// The missing capability.
        what: String,
        /// What to do instead.
        hint: String,
    },
    /// A data or model file is malformed.
    #[error("malformed {what} in {path}: {message}")]
    Format {
        /// The kind of file (e.g. "IDX image file").
        what: String,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An I/O error with the path it concerns.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("reading", "writing", ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A numerical failure (e.g. a covariance that is not positive definite).
    #[error("numerical error in {what}: {message}")]
    Numerical {
        /// Where.
        what: String,
        /// What happened and how to fix it.
        message: String,
    },
}

impl DlmError {
    /// Shorthand for [`DlmError::InvalidParameter`].
    pub fn invalid(name: impl Into<String>, message: impl Into<String>) -> Self {
        DlmError::InvalidParameter {
            name: name.into(),
            message: message.into(),
        }
    }

    /// Shorthand for [`DlmError::ShapeMismatch`].
    pub fn shape(what: impl Into<String>, expected: impl Into<String>, got: &[usize]) -> Self {
        DlmError::ShapeMismatch {
            what: what.into(),
            expected: expected.into(),
            got: got.to_vec(),
        }
    }

    /// Shorthand for [`DlmError::Io`].
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DlmError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Shorthand for [`DlmError::Format`].
    pub fn format(
        what: impl Into<String>,
        path: impl Into<PathBuf>,
        message: impl Into<String>,
    ) -> Self {
        DlmError::Format {
            what: what.into(),
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Checks that every entry of `values` is finite; otherwise a [`DlmError::NonFinite`] naming `what`.
pub fn ensure_finite(what: &str, values: &[f64]) -> Result<()> {
    // Screen with an integer OR over "exponent bits all ones" (NaN or infinity): associative,
    // so it vectorises. A floating-point fold is a serial dependency chain instead and cost
    // ~13 us per 100 x 100 matrix, a third of a LAPJV solve (criterion pair bench).
    const EXP: u64 = 0x7ff0_0000_0000_0000;
    let bad = values
        .iter()
        .fold(0u64, |a, v| a | ((v.to_bits() & EXP) == EXP) as u64);
    if bad != 0 {
        if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(DlmError::NonFinite {
                what: what.to_string(),
                index,
                value,
            });
        }
    }
    Ok(())
}
