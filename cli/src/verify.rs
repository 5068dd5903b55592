//! `dlm verify`: the theory's identities as a table of measured deviations and tolerances.

use crate::common::{num, print_json};
use clap::Args;
use dlm_core::rng::{open01, rng_for, Stream};
use dlm_core::{Registry, Result, Spec, Target};
use dlm_testkit::theory::{self as verify, Check};
use ndarray::{ArrayD, IxDyn};
use serde_json::json;
use std::process::ExitCode;

/// Options of `dlm verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Noise draws per check (tolerances shrink like 1/sqrt(samples)).
    #[arg(long, default_value_t = 200_000)]
    samples: usize,
    /// Seed of all draws (and of the random potentials).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Tolerance in standard errors.
    #[arg(long, default_value_t = 5.0)]
    z: f64,
    /// Classes of the argmax problem used for identities 1-4.
    #[arg(long, default_value_t = 5)]
    classes: usize,
    /// Noise scale sigma.
    #[arg(long, default_value_t = 0.7)]
    sigma: f64,
    /// The noise model (the identities are about zero-mean Gumbel noise).
    #[arg(long, default_value = "gumbel")]
    noise: String,
    /// |eps| of the DLM checks.
    #[arg(long, default_value_t = 0.1)]
    epsilon: f64,
    /// Size n of the n x n matching used for the Monte Carlo DLM check.
    #[arg(long, default_value_t = 3)]
    matching_n: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn verify(reg: &Registry, a: &VerifyArgs) -> Result<ExitCode> {
    check_args(a)?;
    if a.samples < 1000 {
        return Err(dlm_core::DlmError::invalid(
            "--samples",
            "use at least 1000",
        ));
    }
    let argmax = reg.structure(&Spec::named("argmax"))?;
    let matching = reg.structure(&Spec::named("matching"))?;
    let noise = reg.noise(&a.noise.parse()?)?;
    let zero_one = reg.loss(&Spec::named("zero-one"))?;
    let hamming = reg.loss(&Spec::named("hamming"))?;
    let mut rng = rng_for(a.seed, Stream::Other, &[u64::MAX]);
    let mu: Vec<f64> = (0..a.classes)
        .map(|_| 2.0 * open01(&mut rng) - 1.0)
        .collect();
    let sampler = verify::structure_sampler(argmax.as_ref(), noise.as_ref());
    let (n, s, seed, z) = (a.samples, a.sigma, a.seed, a.z);
    let mut checks: Vec<Check> = vec![
        verify::check_softmax_frequencies(&sampler, &mu, s, n, seed, z)?,
        verify::check_expected_max(&sampler, &mu, s, n, seed, z)?,
        verify::check_max_distribution(&sampler, noise.as_ref(), &mu, s, n, seed, z)?,
        verify::check_gradient_of_max(&sampler, &mu, s, n / 4, seed, z)?,
    ];
    let est_argmax = verify::dlm_estimator(argmax.as_ref(), noise.as_ref(), zero_one.as_ref());
    let chunks = 40;
    for eps in [-a.epsilon, a.epsilon] {
        checks.push(verify::check_dlm_argmax(
            &est_argmax,
            &mu,
            s,
            0,
            eps,
            chunks,
            (n / chunks).max(10),
            seed,
            z,
        )?);
    }
    let m = a.matching_n;
    let theta = ArrayD::from_shape_fn(IxDyn(&[m, m]), |_| open01(&mut rng));
    let target = Target {
        truth: (0..m).map(|i| i * m + i).collect(),
        weights: vec![],
    };
    let est_match = verify::dlm_estimator(matching.as_ref(), noise.as_ref(), hamming.as_ref());
    checks.extend(verify::check_dlm_monte_carlo(
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
    )?);
    let failed = checks.iter().filter(|c| !c.pass()).count();
    if a.json {
        print_json(&json!({
            "samples": n,
            "seed": seed,
            "z": z,
            "noise": a.noise,
            "sigma": num(s),
            "passed": checks.len() - failed,
            "failed": failed,
            "checks": checks.iter().map(|c| json!({
                "name": c.name,
                "deviation": num(c.deviation),
                "tolerance": num(c.tolerance),
                "samples": c.samples,
                "pass": c.pass(),
                "detail": c.detail,
            })).collect::<Vec<_>>(),
        }));
    } else {
        println!(
            "{:<68} {:>11} {:>11} {:>5}",
            "check", "deviation", "tolerance", "pass"
        );
        for c in &checks {
            println!(
                "{:<68} {:>11.3e} {:>11.3e} {:>5}\n    {}",
                c.name,
                c.deviation,
                c.tolerance,
                if c.pass() { "ok" } else { "FAIL" },
                c.detail
            );
        }
        println!("{} passed, {} failed", checks.len() - failed, failed);
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Refuses settings under which the checks mean nothing (a table of NaN rows, or rows marked
/// ok against a zero or negative tolerance), and sizes that would exhaust memory.
fn check_args(a: &VerifyArgs) -> Result<()> {
    use dlm_core::limits::at_most;
    use dlm_core::DlmError;
    let positive = |name: &str, v: f64, hint: &str| {
        if v.is_finite() && v > 0.0 {
            Ok(())
        } else {
            Err(DlmError::invalid(name, format!("{v}: {hint}")))
        }
    };
    positive(
        "--sigma",
        a.sigma,
        "the identities are about a positive noise scale; give a finite sigma > 0, e.g. 0.7",
    )?;
    positive(
        "--z",
        a.z,
        "the tolerance in standard errors must be finite and > 0, e.g. 5",
    )?;
    positive(
        "--epsilon",
        a.epsilon,
        "|eps| of the DLM checks must be finite and > 0, e.g. 0.1",
    )?;
    if a.classes < 2 {
        return Err(DlmError::invalid(
            "--classes",
            "the argmax identities need at least 2 classes",
        ));
    }
    at_most(
        "--classes",
        a.classes,
        100_000,
        "every check holds per-class counts and gradients",
    )?;
    if a.matching_n == 0 {
        return Err(DlmError::invalid("--matching-n", "must be at least 1"));
    }
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
