//! The DLM gradient against finite differences of the expected loss, on any small structure.
//!
//! * Structures whose solutions are the one-hot classes (`enumerate([C])` lists `[0]..[C-1]`,
//!   e.g. `argmax`, `topk:k=1`) under Gumbel-family noise: the exact closed form
//!   ([`theory::check_dlm_classes`]): the expected loss is `sum_y softmax(theta / (sigma
//!   beta))_y loss_y`, and the estimator's own finite-`eps` expectation is known exactly.
//! * Otherwise: Monte Carlo with common random numbers ([`theory::check_dlm_monte_carlo`]);
//!   where the structure lists its solutions, the finite differences use a brute-force argmax
//!   over them, independent of the solver under test.
//!
//! Both signs of `eps` are checked; one row each.

use crate::loss::make_targets;
use crate::options::KitOptions;
use crate::plan::plan;
use crate::report::{Check, Report};
use crate::theory::{self, GumbelFit};
use crate::util::{fmt_values, guarded, random_theta, Kind};
use dlm_core::error::{DlmError, Result};
use dlm_core::loss::{Loss, Target};
use dlm_core::noise::NoiseModel;
use dlm_core::rng::{rng_for, Stream};
use dlm_core::structure::StructuredArgmax;
use ndarray::ArrayD;

/// Name prefix of the gradient rows.
pub const GRADIENT_ROW: &str = "DLM gradient = finite differences";

/// Number of chunks the estimator's draws are split into (for its standard error).
const CHUNKS: usize = 40;

fn is_classes(structure: &dyn StructuredArgmax, shape: &[usize]) -> bool {
    if shape.len() != 1 {
        return false;
    }
    match guarded(|| structure.enumerate(shape)) {
        Ok(Some(list)) => {
            list.len() == shape[0] && list.iter().enumerate().all(|(k, y)| y.as_slice() == [k])
        }
        _ => false,
    }
}

/// Checks the DLM gradient of `loss` on `structure` with `noise` at potentials `theta`, scale
/// `sigma` and `target` (see the [module docs](self)), with `opts.samples` draws per sign of
/// `opts.epsilon`, finite-difference step `opts.fd_step` and `opts.z` standard errors.
///
/// Errors for invalid `opts` or `sigma`; a failure of the components is a failing row.
pub fn check_dlm_gradient(
    structure: &dyn StructuredArgmax,
    noise: &dyn NoiseModel,
    loss: &dyn Loss,
    theta: &ArrayD<f64>,
    sigma: f64,
    target: &Target,
    opts: &KitOptions,
) -> Result<Report> {
    opts.validate()?;
    if !(sigma.is_finite() && sigma > 0.0) {
        return Err(DlmError::invalid(
            "sigma",
            format!("{sigma}: the gradient check needs a finite, positive noise scale"),
        ));
    }
    let shape = theta.shape().to_vec();
    let per_chunk = (opts.samples / CHUNKS).max(10);
    let estimator = theory::dlm_estimator(structure, noise, loss);
    let flat: Vec<f64> = theta.iter().copied().collect();
    let instance = format!(
        "shape {shape:?}, theta {}, sigma {sigma}, target truth {:?}{}",
        fmt_values(&flat),
        target.truth,
        if target.weights.is_empty() {
            String::new()
        } else {
            format!(" weights {}", fmt_values(&target.weights))
        }
    );
    let mut report = Report::new();
    let fit = GumbelFit::of(noise);
    if let (true, Ok(fit)) = (is_classes(structure, &shape), &fit) {
        let values: std::result::Result<Vec<f64>, _> = (0..shape[0])
            .map(|k| guarded(|| loss.value(target, &shape, &[k])))
            .collect();
        let values = match values {
            Ok(v) => v,
            Err(f) => {
                report.push(Check::exact(
                    format!("{GRADIENT_ROW} (exact, classes)"),
                    false,
                    0,
                    format!("{instance}: loss value: {f}"),
                ));
                return Ok(report);
            }
        };
        for eps in [-opts.epsilon, opts.epsilon] {
            let name = format!(
                "{GRADIENT_ROW} (exact softmax form, {} {shape:?}, eps {eps})",
                structure.name()
            );
            let row = guarded(|| {
                theory::check_dlm_classes(
                    &estimator, fit, &flat, sigma, target, &values, eps, CHUNKS, per_chunk,
                    opts.seed, opts.z, &name,
                )
            });
            report.push(match row {
                Ok(mut c) => {
                    if c.failed() {
                        c.detail = format!("{}; instance: {instance}", c.detail);
                    }
                    c
                }
                Err(f) => Check::exact(name, false, 0, format!("{instance}: {f}")),
            });
        }
        return Ok(report);
    }
    let rows = guarded(|| {
        theory::check_dlm_monte_carlo(
            &estimator,
            structure,
            noise,
            loss,
            theta,
            sigma,
            target,
            opts.epsilon,
            opts.fd_step,
            CHUNKS,
            per_chunk,
            opts.seed,
            opts.z,
        )
    });
    match rows {
        Ok(rows) => {
            // check_dlm_monte_carlo returns the +eps row, then the -eps row.
            for (mut c, sign) in rows.into_iter().zip(["+", "-"]) {
                c.name = format!(
                    "{GRADIENT_ROW} (Monte Carlo, {} {shape:?}, eps {sign}{})",
                    structure.name(),
                    opts.epsilon
                );
                if c.failed() {
                    c.detail = format!("{}; instance: {instance}", c.detail);
                }
                report.push(c);
            }
        }
        Err(f) => report.push(Check::exact(
            format!(
                "{GRADIENT_ROW} (Monte Carlo, {} {shape:?})",
                structure.name()
            ),
            false,
            0,
            format!("{instance}: the check could not run: {f}"),
        )),
    }
    Ok(report)
}

/// [`check_dlm_gradient`] on a small instance chosen by the kit: the smallest accepted shape
/// whose `enumerate` lists at least three solutions, potentials uniform in
/// `[-sigma, sigma]`, `opts.sigma`, and a target as in the loss checks.
pub fn check_small_instance(
    structure: &dyn StructuredArgmax,
    noise: &dyn NoiseModel,
    loss: &dyn Loss,
    opts: &KitOptions,
) -> Result<Report> {
    opts.validate()?;
    let plan = plan(structure, opts);
    let Some(case) = plan.gradient_case(structure, opts) else {
        let mut r = Report::new();
        r.push(Check::exact(
            GRADIENT_ROW,
            false,
            0,
            "no usable shape (see the conformance row 'shapes')",
        ));
        return Ok(r);
    };
    let mut rng = rng_for(opts.seed, Stream::Other, &[0x6AD]);
    let theta = random_theta(&case.shape, &mut rng, Kind::Continuous).mapv(|v| v * opts.sigma);
    let target = match make_targets(loss, &case.shape, &case.solutions.list, 1, &mut rng, opts) {
        Ok(mut t) => t.remove(0),
        Err(why) => {
            let mut r = Report::new();
            r.push(Check::exact(GRADIENT_ROW, false, 0, why));
            return Ok(r);
        }
    };
    check_dlm_gradient(structure, noise, loss, &theta, opts.sigma, &target, opts)
}
