//! # dlm-testkit
//!
//! The checks every `dlm` component should pass, as a library: run it from a plugin's own
//! `cargo test`, or through `dlm verify --structure SPEC [--loss SPEC] [--noise SPEC]`.
//!
//! ```
//! # use dlm_core::{DlmError, Loss, Result, StructuredArgmax, Target};
//! # use dlm_core::structure::checked_slice;
//! # use ndarray::{ArrayViewD, ArrayViewMutD};
//! # /// Multiclass argmax, ties to the lowest index.
//! # struct Best;
//! # impl StructuredArgmax for Best {
//! #     fn name(&self) -> &str { "best" }
//! #     fn check_shape(&self, shape: &[usize]) -> Result<()> {
//! #         match shape {
//! #             [c] if *c >= 1 => Ok(()),
//! #             _ => Err(DlmError::shape("best", "[C]", shape)),
//! #         }
//! #     }
//! #     fn argmax(&self, theta: ArrayViewD<'_, f64>, out: &mut Vec<usize>) -> Result<()> {
//! #         let t = checked_slice(self, &theta)?;
//! #         let best = (0..t.len()).fold(0, |b, i| if t[i] > t[b] { i } else { b });
//! #         out.clear();
//! #         out.push(best);
//! #         Ok(())
//! #     }
//! #     fn enumerate(&self, shape: &[usize]) -> Result<Option<Vec<Vec<usize>>>> {
//! #         Ok(Some((0..shape[0]).map(|c| vec![c]).collect()))
//! #     }
//! # }
//! # /// 0/1 loss: linear with L = -e_t, c = 1.
//! # struct Miss;
//! # impl Loss for Miss {
//! #     fn name(&self) -> &str { "miss" }
//! #     fn value(&self, t: &Target, _: &[usize], y: &[usize]) -> Result<f64> {
//! #         Ok(if y == t.truth.as_slice() { 0.0 } else { 1.0 })
//! #     }
//! #     fn linear_form(&self, t: &Target, mut out: ArrayViewMutD<'_, f64>) -> Result<Option<f64>> {
//! #         out.fill(0.0);
//! #         out.as_slice_mut().unwrap()[t.truth[0]] = -1.0;
//! #         Ok(Some(1.0))
//! #     }
//! # }
//! // In a plugin's tests: conformance, the loss, and the DLM gradient (default noise).
//! dlm_testkit::check_all(&Best, Some(&Miss), None).assert_pass();
//! ```
//!
//! * [`conformance`]: a structure against brute force over its `enumerate`d solutions
//!   (optimal, feasible, `phi` consistent, deterministic, bad input refused).
//! * [`loss`]: a loss's linear form, or the structure's loss-augmented argmax.
//! * [`theory`]: the Gumbel-max identities for any Gumbel-family noise at its own scale.
//! * [`gradient`]: the DLM gradient against finite differences on a small instance.
//! * [`estimators`]: any [`GradientEstimator`](dlm_core::GradientEstimator) against its
//!   published formula by brute force, finite differences of its own surrogate loss, or exact
//!   expectations on a multiclass argmax, with [`Mutant`](estimators::Mutant)s as negative
//!   controls.
//! * [`run_kit`] / [`check_all`]: all of them; a [`Report`] of [`Check`] rows.
//!
//! Every statistical tolerance comes from the sample size (`z` standard errors), so equal
//! seeds give equal reports and a failure is either a bug or a `2 exp(-z^2)`-rare fluke.

pub mod conformance;
pub mod estimators;
pub mod gradient;
pub mod loss;
mod options;
mod plan;
pub mod report;
pub mod theory;
mod util;

pub use options::{KitOptions, TargetFn};
pub use report::{Check, Report, Status};
pub use util::ZeroMeanGumbel;

use dlm_core::error::Result;
use dlm_core::loss::Loss;
use dlm_core::noise::NoiseModel;
use dlm_core::structure::StructuredArgmax;

/// Runs the whole kit on one component set and returns one report:
///
/// 1. [`conformance`] of `structure`;
/// 2. with a `loss`: the [`loss`] checks on `structure`;
/// 3. with a `noise`: the Gumbel-max identities for it ([`theory::check_noise`]; skipped rows
///    when it is not Gumbel-family);
/// 4. with a `loss`: the DLM gradient against finite differences on a small instance
///    ([`gradient::check_small_instance`]) under `noise`, or without one the kit's own
///    zero-mean Gumbel ([`ZeroMeanGumbel`]); without a loss this row is skipped.
///
/// Errors only for invalid `opts`.
///
/// ```
/// use dlm_testkit::{run_kit, KitOptions, ZeroMeanGumbel};
/// # use dlm_core::{DlmError, Result, StructuredArgmax};
/// # use dlm_core::structure::checked_slice;
/// # use ndarray::ArrayViewD;
/// # struct Best;
/// # impl StructuredArgmax for Best {
/// #     fn name(&self) -> &str { "best" }
/// #     fn check_shape(&self, shape: &[usize]) -> Result<()> {
/// #         match shape {
/// #             [c] if *c >= 1 => Ok(()),
/// #             _ => Err(DlmError::shape("best", "[C]", shape)),
/// #         }
/// #     }
/// #     fn argmax(&self, theta: ArrayViewD<'_, f64>, out: &mut Vec<usize>) -> Result<()> {
/// #         let t = checked_slice(self, &theta)?;
/// #         let best = (0..t.len()).fold(0, |b, i| if t[i] > t[b] { i } else { b });
/// #         out.clear();
/// #         out.push(best);
/// #         Ok(())
/// #     }
/// # }
/// let opts = KitOptions { samples: 4000, ..KitOptions::default() };
/// let report = run_kit(&Best, None, Some(&ZeroMeanGumbel), &opts)?;
/// assert!(report.passed(), "{report}");
/// // No loss: the gradient row is skipped; no enumerate: optimality against probing.
/// assert!(report.num_skipped() >= 1);
/// # Ok::<(), dlm_core::DlmError>(())
/// ```
pub fn run_kit(
    structure: &dyn StructuredArgmax,
    loss: Option<&dyn Loss>,
    noise: Option<&dyn NoiseModel>,
    opts: &KitOptions,
) -> Result<Report> {
    opts.validate()?;
    let plan = plan::plan(structure, opts);
    let mut report = conformance::check_planned(structure, &plan, opts);
    if let Some(l) = loss {
        report.extend(loss::check_loss_planned(structure, l, &plan, opts));
    }
    if let Some(n) = noise {
        report.extend(theory::check_noise(n, opts)?);
    }
    match loss {
        Some(l) => report.extend(gradient::check_small_instance(
            structure,
            noise.unwrap_or(&ZeroMeanGumbel),
            l,
            opts,
        )?),
        None => report.push(Check::skipped(
            gradient::GRADIENT_ROW,
            "no loss given: the DLM gradient needs one",
        )),
    }
    Ok(report)
}

/// [`run_kit`] with [`KitOptions::default`], for a plugin's tests:
/// `check_all(&MyStructure, Some(&MyLoss), None).assert_pass()`.
pub fn check_all(
    structure: &dyn StructuredArgmax,
    loss: Option<&dyn Loss>,
    noise: Option<&dyn NoiseModel>,
) -> Report {
    run_kit(structure, loss, noise, &KitOptions::default())
        .expect("the default kit options are valid")
}
