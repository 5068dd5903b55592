//! What the estimators share: option checks, linear forms, the truth's indicator.

use dlm_core::loss::{Loss, Target};
use dlm_core::{Config, DlmError, Result};
use ndarray::{ArrayViewMutD, IxDyn};

/// `lambda` must be finite and positive.
pub(crate) fn check_lambda(estimator: &str, lambda: f64) -> Result<()> {
    if lambda.is_finite() && lambda > 0.0 {
        Ok(())
    } else {
        Err(DlmError::invalid(
            format!("{estimator}:lambda"),
            format!(
                "{lambda} is not allowed: lambda must be finite and > 0 (the size of the step \
                 towards lower loss; typical values 1 to 100)"
            ),
        ))
    }
}

/// `draws` must be at least 1.
pub(crate) fn check_draws(estimator: &str, draws: usize) -> Result<()> {
    if draws >= 1 {
        Ok(())
    } else {
        Err(DlmError::invalid(
            format!("{estimator}:draws"),
            "must be at least 1 (noise draws per example)",
        ))
    }
}

/// Reads `lambda` (finite, > 0) from a config.
pub(crate) fn lambda_option(c: &Config, estimator: &str, default: f64) -> Result<f64> {
    let lambda = c.f64("lambda", default)?;
    check_lambda(estimator, lambda)?;
    Ok(lambda)
}

/// Reads `draws` (>= 1) from a config.
pub(crate) fn draws_option(c: &Config, estimator: &str, default: usize) -> Result<usize> {
    let draws = c.usize("draws", default)?;
    check_draws(estimator, draws)?;
    Ok(draws)
}

/// The linear forms `L(t_b)` of every example, `lin[b * m..(b + 1) * m]`; an error naming the
/// estimator when the loss has none for some example (the estimator needs `dL/dphi`).
pub(crate) fn linear_forms(
    estimator: &str,
    loss: &dyn Loss,
    targets: &[Target],
    inner: &[usize],
    lin: &mut Vec<f64>,
) -> Result<()> {
    let m: usize = inner.iter().product();
    lin.clear();
    lin.resize(targets.len() * m, 0.0);
    for (b, t) in targets.iter().enumerate() {
        let out = ArrayViewMutD::from_shape(IxDyn(inner), &mut lin[b * m..(b + 1) * m])
            .expect("shape matches");
        if loss.linear_form(t, out)?.is_none() {
            return Err(DlmError::Unsupported {
                component: format!("estimator '{estimator}'"),
                what: format!(
                    "loss '{}', which has no linear form (for example {b})",
                    loss.name()
                ),
                hint: "it needs the loss's gradient dL/dphi: use a loss that is linear in the \
                       structure indicator (e.g. hamming), or the dlm estimator, which also \
                       works through the structure's loss-augmented argmax"
                    .into(),
            });
        }
    }
    dlm_core::ensure_finite("loss linear form", lin)
}

/// Checks that every example's `truth` is a non-empty active set of indices below `m`.
pub(crate) fn check_truths(estimator: &str, targets: &[Target], m: usize) -> Result<()> {
    for (b, t) in targets.iter().enumerate() {
        if t.truth.is_empty() {
            return Err(DlmError::invalid(
                format!("target of example {b}"),
                format!(
                    "the truth is empty, but estimator '{estimator}' needs phi(y_true): give the \
                     active set of the true structure"
                ),
            ));
        }
        if let Some(&i) = t.truth.iter().find(|&&i| i >= m) {
            return Err(DlmError::invalid(
                format!("target of example {b}"),
                format!("truth index {i} is outside potentials of {m} entries"),
            ));
        }
    }
    Ok(())
}
