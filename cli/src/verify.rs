//! `dlm verify`: the theory's identities, and the test kit on any component, as a table of
//! measured deviations and tolerances.

use crate::common::{num, print_json};
use clap::Args;
use dlm_core::rng::{open01, rng_for, Stream};
use dlm_core::{DlmError, Registry, Result, Spec, Target};
use dlm_testkit::theory::{self as verify, GumbelFit};
use dlm_testkit::{run_kit, Check, KitOptions, Report, Status};
use ndarray::{ArrayD, IxDyn};
use serde_json::json;
use std::process::ExitCode;

/// Options of `dlm verify`.
///
/// Without --structure: the Gumbel-max identities for --noise on the argmax structure, the DLM
/// gradient of argmax (exact) and of an n x n matching (Monte Carlo) against finite
/// differences. With --structure: the test kit on that structure (conformance against brute
/// force, the --loss checks, the identities for --noise, the DLM gradient on a small instance).
/// Exit status 1 when a check fails; skipped checks (e.g. Gumbel identities for Gaussian
/// noise) do not fail.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Run the test kit on this structure (a spec, e.g. matching:algo=km, or one a --plugin
    /// registers).
    #[arg(long, value_name = "SPEC")]
    structure: Option<String>,
    /// The loss for the kit's loss and gradient checks (with --structure); without it the
    /// gradient check is skipped.
    #[arg(long, value_name = "SPEC", requires = "structure")]
    loss: Option<String>,
    /// Noise draws per statistical check (tolerances shrink like 1/sqrt(samples)); >= 1000.
    #[arg(long, default_value_t = 200_000)]
    samples: usize,
    /// Seed of all draws (and of the random potentials).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Tolerance in standard errors (> 0).
    #[arg(long, default_value_t = 5.0, allow_negative_numbers = true)]
    z: f64,
    /// Classes of the argmax problem used for identities 1-4 (>= 2).
    #[arg(long, default_value_t = 5)]
    classes: usize,
    /// Noise scale sigma (> 0).
    #[arg(long, default_value_t = 0.7, allow_negative_numbers = true)]
    sigma: f64,
    /// The noise model. The identities hold for any Gumbel (at its own location and scale,
    /// e.g. gumbel:variance=3); for other noise they are skipped.
    #[arg(long, default_value = "gumbel")]
    noise: String,
    /// |eps| of the DLM checks (> 0; both signs are checked).
    #[arg(long, default_value_t = 0.1, allow_negative_numbers = true)]
    epsilon: f64,
    /// Size n of the n x n matching used for the Monte Carlo DLM check (without --structure).
    #[arg(long, default_value_t = 3)]
    matching_n: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn validate(a: &VerifyArgs) -> Result<()> {
    let positive = |flag: &str, v: f64, hint: &str| {
        if v.is_finite() && v > 0.0 {
            Ok(())
        } else {
            Err(DlmError::invalid(
                flag,
                format!("{v} is not allowed: it must be finite and positive ({hint})"),
            ))
        }
    };
    positive("--sigma", a.sigma, "the noise scale; the default is 0.7")?;
    positive(
        "--z",
        a.z,
        "the tolerance in standard errors; the default is 5",
    )?;
    positive(
        "--epsilon",
        a.epsilon,
        "|eps|; both signs are checked; the default is 0.1",
    )?;
    if a.samples < 1000 {
        return Err(DlmError::invalid(
            "--samples",
            format!("{} is too few: use at least 1000", a.samples),
        ));
    }
    if a.classes < 2 {
        return Err(DlmError::invalid(
            "--classes",
            format!("{}: the identities need at least 2 classes", a.classes),
        ));
    }
    if a.matching_n == 0 {
        return Err(DlmError::invalid("--matching-n", "must be at least 1"));
    }
    use dlm_core::limits::at_most;
    at_most(
        "--classes",
        a.classes,
        100_000,
        "every check holds per-class counts and gradients",
    )?;
    at_most(
        "--matching-n",
        a.matching_n,
        64,
        "the Monte Carlo check solves one n x n matching per draw and chunk",
    )?;
    let per_draw = a.classes.max(a.matching_n * a.matching_n) + 4;
    at_most(
        "--samples",
        a.samples,
        (1 << 28) / per_draw,
        &format!(
            "the checks keep max(--classes, --matching-n^2) + 4 = {per_draw} values per draw, 2 GiB at the limit"
        ),
    )
}

fn options(a: &VerifyArgs) -> KitOptions {
    KitOptions {
        seed: a.seed,
        samples: a.samples,
        z: a.z,
        sigma: a.sigma,
        epsilon: a.epsilon,
        classes: a.classes,
        ..KitOptions::default()
    }
}

/// The classic checks: identities on the registered argmax, DLM on argmax (exact) and on a
/// matching (Monte Carlo).
fn classic(reg: &Registry, a: &VerifyArgs) -> Result<Report> {
    let argmax = reg.structure(&Spec::named("argmax"))?;
    let matching = reg.structure(&Spec::named("matching"))?;
    let noise = reg.noise(&a.noise.parse()?)?;
    let zero_one = reg.loss(&Spec::named("zero-one"))?;
    let hamming = reg.loss(&Spec::named("hamming"))?;
    let opts = options(a);
    let sampler = verify::structure_sampler(argmax.as_ref(), noise.as_ref());
    let mut report = verify::check_noise_with(&sampler, noise.as_ref(), &opts)?;
    let (n, s, seed, z) = (a.samples, a.sigma, a.seed, a.z);
    let mu = verify::identity_potentials(a.classes, seed);
    let chunks = 40;
    let est_argmax = verify::dlm_estimator(argmax.as_ref(), noise.as_ref(), zero_one.as_ref());
    for eps in [-a.epsilon, a.epsilon] {
        report.push(match GumbelFit::of(noise.as_ref()) {
            Ok(fit) => verify::check_dlm_argmax(
                &est_argmax,
                &fit,
                &mu,
                s,
                0,
                eps,
                chunks,
                (n / chunks).max(10),
                seed,
                z,
            )?,
            Err(reason) => Check::skipped(
                format!("DLM gradient = FD of exact expected loss (argmax, eps {eps})"),
                format!("the exact form needs Gumbel noise: {reason}"),
            ),
        });
    }
    let m = a.matching_n;
    let mut rng = rng_for(seed, Stream::Other, &[u64::MAX, 1]);
    let theta = ArrayD::from_shape_fn(IxDyn(&[m, m]), |_| open01(&mut rng));
    let target = Target {
        truth: (0..m).map(|i| i * m + i).collect(),
        weights: vec![],
    };
    let est_match = verify::dlm_estimator(matching.as_ref(), noise.as_ref(), hamming.as_ref());
    for c in verify::check_dlm_monte_carlo(
        &est_match,
        matching.as_ref(),
        noise.as_ref(),
        hamming.as_ref(),
        &theta,
        s,
        &target,
        a.epsilon,
        0.02,
        chunks,
        (n / chunks).max(10),
        seed,
        z,
    )? {
        report.push(c);
    }
    Ok(report)
}

pub fn verify(reg: &Registry, a: &VerifyArgs) -> Result<ExitCode> {
    validate(a)?;
    let report = match &a.structure {
        None => classic(reg, a)?,
        Some(spec) => {
            let structure = reg.structure(&spec.parse()?)?;
            let loss = match &a.loss {
                Some(l) => Some(reg.loss(&l.parse()?)?),
                None => None,
            };
            let noise = reg.noise(&a.noise.parse()?)?;
            run_kit(
                structure.as_ref(),
                loss.as_deref(),
                Some(noise.as_ref()),
                &options(a),
            )?
        }
    };
    if a.json {
        print_json(&json!({
            "structure": a.structure,
            "loss": a.loss,
            "noise": a.noise,
            "samples": a.samples,
            "seed": a.seed,
            "z": a.z,
            "sigma": num(a.sigma),
            "passed": report.num_passed(),
            "failed": report.num_failed(),
            "skipped": report.num_skipped(),
            "checks": report.checks.iter().map(|c| json!({
                "name": c.name,
                "deviation": num(c.deviation),
                "tolerance": num(c.tolerance),
                "samples": c.samples,
                "status": match c.status() {
                    Status::Pass => "pass",
                    Status::Fail => "fail",
                    Status::Skip => "skip",
                },
                "pass": c.pass(),
                "detail": c.detail,
            })).collect::<Vec<_>>(),
        }));
    } else {
        println!("{report}");
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
